"""`pipo-agent bench`: PIPO against the AR baseline on the same engine, in the same run.

Measured (greedy, prefix cache off so repeats recompute):
  TTFT     one request, prompt of N tokens, one output token; median of `repeats` after a warm-up
  decode   B concurrent held-out task prompts to completion (EOS or `max_new_tokens`): mean TPOT per request,
           output tokens/s over the wall time, tokens per step
  KV       bytes of KV written per generated token: slots x bytes per slot (PIPO's slot holds the backbone
           layers and the MTP layer for two tokens, AR's the backbone layers for one)
  profile  per-phase milliseconds per decode step at batch 1 (metadata, backbone, head+sample, MTP+confidence)
  tau      tokens per step and accuracy of the agent tool loop on held-out tasks, PIPO at each tau and AR
Every ratio is AR / PIPO for times and PIPO / AR for KV bytes, so > 1 means PIPO is faster, < 1 leaner.
"""

import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from pipo_agent.backends.decode.sampling import SamplingParams
from pipo_agent.backends.engine.decoder import EngineDecoder
from pipo_agent.backends.engine.llm_engine import LLMEngine, load_engine
from pipo_agent.backends.engine.model_runner import NoProfiler, StepProfiler
from pipo_agent.backends.eval.tool_loop import solve_with_tools
from pipo_agent.tasks import SYSTEM_PROMPT, check, family_names, generate_tasks, render_chat, solve

logger = logging.getLogger(__name__)

HELDOUT_SEED = 20_261_125
TARGETS = {"ttft_ratio_at_longest": 1.8, "tpot_ratio_batch1": 1.5, "kv_bytes_ratio": 0.6}


class BenchConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model_dir: str | None = None  # default: the shipped model
    device: str = "cpu"
    attention: str | None = None  # default: triton on CUDA, torch elsewhere
    threads: int = Field(2, ge=1)
    prompt_lengths: tuple[int, ...] = (256, 1024, 4064)  # AR's context is 4096 tokens: room for one more
    repeats: int = Field(3, ge=1)
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    max_new_tokens: int = Field(256, ge=2)
    tau: float = Field(0.9, ge=-1, le=1)
    taus: tuple[float, ...] = (-1.0, 0.5, 0.8, 0.9, 0.95, 1.0)
    sweep_tasks_per_family: int = Field(4, ge=0)
    sweep_max_new_tokens: int = Field(512, ge=1)
    out_dir: str = "bench-results"

    @classmethod
    def quick(cls, **overrides: Any) -> "BenchConfig":
        """A smoke-sized run (seconds): tiny prompts, batches and sweep."""
        base: dict[str, Any] = dict(
            prompt_lengths=(32, 64),
            repeats=1,
            batch_sizes=(1, 2),
            max_new_tokens=8,
            taus=(0.9, 1.0),
            sweep_tasks_per_family=1,
            sweep_max_new_tokens=24,
        )
        base.update(overrides)
        return cls(**base)


def _engines(cfg: BenchConfig, max_tokens: int) -> tuple[LLMEngine, LLMEngine, Any]:
    common: dict[str, Any] = dict(
        device=cfg.device,
        attention=cfg.attention,
        enable_prefix_caching=False,
        max_num_seqs=max(cfg.batch_sizes),
        # A whole prompt in one chunk, for both: TTFT then measures compute, not chunking policy.
        max_num_batched_pairs=max(max_tokens, max(cfg.batch_sizes)),
        chunk_pairs=max(max_tokens, 1),
        kv_cache_bytes=1 << 30,
    )
    pipo, tokenizer = load_engine(cfg.model_dir, mode="pipo", **common)
    ar, _ = load_engine(cfg.model_dir, mode="ar", **common)
    return pipo, ar, tokenizer


def _natural_ids(tokenizer: Any, length: int) -> list[int]:
    """`length` tokens of real task conversations (held-out seed), concatenated."""
    ids: list[int] = []
    seed = HELDOUT_SEED + 7
    while len(ids) < length:
        for family in family_names():
            task = generate_tasks(family, 1, seed=seed)[0]
            trajectory = solve(task)
            text = render_chat([dict(m) for m in trajectory.messages], [dict(t) for t in trajectory.tools])
            ids += tokenizer(text, add_special_tokens=False)["input_ids"]
        seed += 1
    return ids[:length]


def _task_prompts(tokenizer: Any, n: int) -> list[list[int]]:
    """First-turn prompts (system, tools, question) of `n` held-out tasks, families interleaved."""
    prompts: list[list[int]] = []
    per_family = -(-n // len(family_names()))
    tasks = [generate_tasks(f, per_family, seed=HELDOUT_SEED) for f in family_names()]
    for i in range(per_family):
        for family_tasks in tasks:
            task = family_tasks[i]
            tools = [dict(t) for t in solve(task).tools]
            messages = [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": task.question},
            ]
            text = render_chat(messages, tools, add_generation_prompt=True)
            prompts.append(list(tokenizer(text, add_special_tokens=False)["input_ids"]))
    return prompts[:n]


def _run_batch(engine: LLMEngine, prompts: list[list[int]], params: SamplingParams) -> dict[str, Any]:
    start = time.perf_counter()
    results = engine.generate(prompts, params)
    wall = time.perf_counter() - start
    tokens = sum(r.stats.tokens for r in results)
    steps = sum(r.stats.steps for r in results)
    tpots = [r.stats.tpot_s for r in results if r.stats.tpot_s is not None]
    return {
        "requests": len(prompts),
        "tokens": tokens,
        "steps": steps,
        "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "tokens_per_step": tokens / steps,
        "tpot_ms": 1e3 * statistics.mean(tpots) if tpots else None,
        "ttft_ms": 1e3 * statistics.mean(r.stats.ttft_s for r in results),
        "drafts_committed": sum(r.stats.drafts_committed for r in results),
        "drafts_proposed": sum(r.stats.drafts_proposed for r in results),
    }


def _kv_bytes_per_slot(engine: LLMEngine) -> int:
    """Bytes one slot takes in the engine's pool (every layer's K and V, the MTP layer's for PIPO)."""
    return engine.kv.nbytes // engine.config.num_kv_slots


def measure_ttft(cfg: BenchConfig, pipo: LLMEngine, ar: LLMEngine, tokenizer: Any) -> list[dict[str, Any]]:
    rows = []
    params = SamplingParams(max_new_tokens=1, tau=cfg.tau)
    for length in cfg.prompt_lengths:
        prompt = _natural_ids(tokenizer, length)
        row: dict[str, Any] = {"prompt_tokens": length}
        for name, engine in (("pipo", pipo), ("ar", ar)):
            engine.generate([prompt], params)  # warm-up
            times = [engine.generate([prompt], params)[0].stats.ttft_s for _ in range(cfg.repeats)]
            row[f"{name}_ms"] = 1e3 * statistics.median(times)
        row["ratio"] = row["ar_ms"] / row["pipo_ms"]
        rows.append(row)
        logger.info("ttft %s", row)
    return rows


def measure_decode(cfg: BenchConfig, pipo: LLMEngine, ar: LLMEngine, tokenizer: Any) -> list[dict[str, Any]]:
    rows = []
    prompts = _task_prompts(tokenizer, max(cfg.batch_sizes))
    pipo_slot, ar_slot = _kv_bytes_per_slot(pipo), _kv_bytes_per_slot(ar)
    for batch in cfg.batch_sizes:
        row: dict[str, Any] = {"batch": batch}
        for name, engine in (("pipo", pipo), ("ar", ar)):
            params = SamplingParams(max_new_tokens=cfg.max_new_tokens, tau=cfg.tau if name == "pipo" else 1.0)
            engine.generate(prompts[:1], params.model_copy(update={"max_new_tokens": 4}))  # warm-up
            stats = _run_batch(engine, prompts[:batch], params)
            stats["kv_bytes_per_token"] = (
                (pipo_slot if name == "pipo" else ar_slot) * stats["steps"] / stats["tokens"]
            )
            row[name] = stats
        row["tpot_ratio"] = row["ar"]["tpot_ms"] / row["pipo"]["tpot_ms"]
        row["throughput_ratio"] = row["pipo"]["tokens_per_s"] / row["ar"]["tokens_per_s"]
        row["kv_bytes_ratio"] = row["pipo"]["kv_bytes_per_token"] / row["ar"]["kv_bytes_per_token"]
        rows.append(row)
        logger.info("decode batch %d: %s", batch, {k: v for k, v in row.items() if "ratio" in k})
    return rows


def profile_decode(cfg: BenchConfig, pipo: LLMEngine, ar: LLMEngine, tokenizer: Any) -> dict[str, Any]:
    prompt = _task_prompts(tokenizer, 1)
    out: dict[str, Any] = {}
    for name, engine in (("pipo", pipo), ("ar", ar)):
        params = SamplingParams(max_new_tokens=cfg.max_new_tokens, tau=cfg.tau if name == "pipo" else 1.0)
        engine.generate(prompt, params)  # warm-up
        profiler = StepProfiler(engine.device)
        engine.runner.profiler = profiler
        try:
            result = engine.generate(prompt, params)[0]
        finally:
            engine.runner.profiler = NoProfiler()
        out[name] = {
            "ms_per_step": profiler.per_step_ms(),
            "step_ms": sum(profiler.per_step_ms().values()),
            "tokens_per_step": result.stats.tokens_per_step,
        }
    out["step_cost_ratio"] = out["pipo"]["step_ms"] / out["ar"]["step_ms"]
    out["predicted_tpot_ratio"] = out["pipo"]["tokens_per_step"] / out["step_cost_ratio"]
    return out


def tau_sweep(cfg: BenchConfig, pipo: LLMEngine, ar: LLMEngine, tokenizer: Any) -> list[dict[str, Any]]:
    tasks = [
        t for f in family_names() for t in generate_tasks(f, cfg.sweep_tasks_per_family, seed=HELDOUT_SEED)
    ]
    rows = []
    systems: list[tuple[str, LLMEngine, float]] = [("pipo", pipo, tau) for tau in cfg.taus] + [
        ("ar", ar, 1.0)
    ]
    for name, engine, tau in systems:
        decoder = EngineDecoder(engine)
        correct = tokens = steps = 0
        for task in tasks:
            params = SamplingParams(max_new_tokens=cfg.sweep_max_new_tokens, tau=tau)
            result = solve_with_tools(decoder, tokenizer, task.question, params=params)
            correct += check(task, result.final_text)
            tokens += result.stats.tokens
            steps += result.stats.steps
        row = {
            "system": name,
            "tau": tau if name == "pipo" else None,
            "tasks": len(tasks),
            "accuracy": correct / max(1, len(tasks)),
            "tokens_per_step": tokens / max(1, steps),
        }
        rows.append(row)
        logger.info("tau sweep %s", row)
    return rows


def run_benchmark(cfg: BenchConfig) -> dict[str, Any]:
    torch.set_num_threads(cfg.threads)
    max_tokens = max(max(cfg.prompt_lengths), 4096)
    pipo, ar, tokenizer = _engines(cfg, max_tokens)
    device_name = (
        torch.cuda.get_device_name(0) if cfg.device.startswith("cuda") else f"cpu ({cfg.threads} threads)"
    )
    report: dict[str, Any] = {
        "config": cfg.model_dump(mode="json"),
        "device": device_name,
        "attention_backend": str(pipo.backend.name),
        "ttft": measure_ttft(cfg, pipo, ar, tokenizer),
        "decode": measure_decode(cfg, pipo, ar, tokenizer),
        "profile_batch1": profile_decode(cfg, pipo, ar, tokenizer),
        "tau_sweep": tau_sweep(cfg, pipo, ar, tokenizer) if cfg.sweep_tasks_per_family else [],
    }
    batch1 = next((r for r in report["decode"] if r["batch"] == 1), report["decode"][0])
    report["targets"] = {
        "ttft_ratio_at_longest": {
            "target": TARGETS["ttft_ratio_at_longest"],
            "measured": report["ttft"][-1]["ratio"],
        },
        "tpot_ratio_batch1": {"target": TARGETS["tpot_ratio_batch1"], "measured": batch1["tpot_ratio"]},
        "kv_bytes_ratio": {
            "target": TARGETS["kv_bytes_ratio"],
            "measured": batch1["kv_bytes_ratio"],
            "lower_is_better": True,
        },
    }
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    from pipo_agent.backends.bench.plots import plot_report

    report["plots"] = [str(p) for p in plot_report(report, out)]
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    return report
