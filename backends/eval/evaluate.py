"""The evaluation: accuracy, speed and calibration of PIPO against its AR teacher on held-out tasks.

Held-out tasks are `generate_tasks(family, n, seed=HELDOUT_SEED)` (training uses other seeds). Every system
(the AR teacher, then each PIPO checkpoint at each tau) solves every task k times with the tool loop, with
the same seed per (task, sample), so systems are compared on paired samples. Per family and overall:
avg@k (mean correctness), pass@k (share of tasks with a correct sample), tokens per step, drafts proposed
and committed, mean TPOT and tokens/s, and the confidence head's ECE against measured acceptance (see
:mod:`~pipo_agent.backends.eval.calibration`). Writes `eval.json` (config, rows, calibration, timings) and
`eval.png` into `out_dir`.
"""

import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from pipo_agent.backends.decode import ARDecoder, PipoReferenceDecoder, SamplingParams
from pipo_agent.backends.eval.calibration import (
    Calibration,
    draft_acceptance,
    expected_calibration_error,
)
from pipo_agent.backends.eval.tool_loop import LoopStats, StreamingDecoder, solve_with_tools
from pipo_agent.backends.model import PipoModel, load_pipo
from pipo_agent.backends.train.tokenizer import load_tokenizer
from pipo_agent.tasks import Task, check, family_names, generate_tasks

logger = logging.getLogger(__name__)

HELDOUT_SEED: Final = 20261125
DEFAULT_TAUS: Final = (-1.0, 0.5, 0.8, 0.9, 0.95, 1.0)
TEACHER: Final = "teacher"
MAIN: Final = "pipo"
ALL_FAMILIES: Final = "all"
JSON_NAME: Final = "eval.json"
PLOT_NAME: Final = "eval.png"


class EvalConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model_dir: Path  # PIPO checkpoint with its tokenizer files
    teacher_dir: Path | None = None  # without it: no AR row and no calibration
    out_dir: Path = Path("eval")
    extra_models: dict[str, Path] = {}  # more PIPO checkpoints (e.g. other confidence heads), same tokenizer
    families: tuple[str, ...] = ()  # empty: every family
    n: int = Field(20, ge=1)  # tasks per family
    k: int = Field(4, ge=1)  # samples per task
    taus: tuple[float, ...] = DEFAULT_TAUS
    temperature: float = Field(0.7, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    top_k: int = Field(20, ge=0)
    max_new_tokens: int = Field(512, ge=1)  # per turn
    max_turns: int = Field(8, ge=1)
    seed: int = HELDOUT_SEED
    num_bins: int = Field(10, ge=1)
    device: str = "cpu"
    progress: bool = True
    workers: int = Field(1, ge=1)  # processes, each with its own copy of the models; 1 runs in-process

    @field_validator("families")
    @classmethod
    def _known_families(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(family_names()))
        if unknown:
            raise ValueError(f"unknown families {unknown}; valid: {', '.join(family_names())}")
        return value

    @field_validator("taus")
    @classmethod
    def _valid_taus(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not -1.0 <= t <= 1.0 for t in value):
            raise ValueError(f"taus must be a non-empty list of values in [-1, 1], got {list(value)}")
        return value

    @field_validator("extra_models")
    @classmethod
    def _free_names(cls, value: dict[str, Path]) -> dict[str, Path]:
        taken = sorted({TEACHER, MAIN} & set(value))
        if taken:
            raise ValueError(f"extra model names {taken} are reserved")
        return value

    def family_list(self) -> list[str]:
        return list(self.families) or family_names()


@dataclass(frozen=True)
class RunRecord:
    """One conversation: a system at a tau (None for the AR teacher) on one sample of one task."""

    system: str
    tau: float | None
    family: str
    task: int
    sample: int
    correct: bool
    stats: LoopStats
    stop: str
    scored: tuple[tuple[float, float], ...]  # (conf, α) of every proposed draft


def sample_seed(task: Task, sample: int) -> int:
    return (task.seed * 1_000_003 + sample) % 2**63


def load_teacher(directory: str | Path, device: str = "cpu") -> PreTrainedModel:
    model = AutoModelForCausalLM.from_pretrained(str(directory))
    return cast(PreTrainedModel, model.float().eval().to(device))  # type: ignore[no-untyped-call]


def _params(config: EvalConfig, task: Task, sample: int, tau: float | None) -> SamplingParams:
    return SamplingParams(
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=config.top_k,
        seed=sample_seed(task, sample),
        max_new_tokens=config.max_new_tokens,
        tau=1.0 if tau is None else tau,
        logprobs=tau is not None,  # PIPO runs need the drafts' log-probs for calibration
    )


@dataclass(frozen=True)
class _Job:
    """Every sample of one task for one system at one tau: the unit of work a worker process runs."""

    system: str
    tau: float | None
    family: str
    index: int


@dataclass
class _Systems:
    """What running a job needs: the tokenizer, the PIPO models, the teacher and the held-out tasks."""

    tokenizer: PreTrainedTokenizerBase
    models: dict[str, PipoModel]
    teacher: PreTrainedModel | None
    tasks: dict[str, list[Task]]

    @classmethod
    def load(cls, config: "EvalConfig") -> "_Systems":
        tasks = {f: generate_tasks(f, config.n, seed=config.seed) for f in config.family_list()}
        teacher = load_teacher(config.teacher_dir, config.device) if config.teacher_dir else None
        return cls(load_tokenizer(config.model_dir), _load_models(config), teacher, tasks)

    def decoder(self, system: str) -> StreamingDecoder:
        if system == TEACHER:
            assert self.teacher is not None
            main = self.models[MAIN]
            eos = main.config.eos_token_ids or (int(self.tokenizer.eos_token_id),)
            return ARDecoder(self.teacher, eos)
        return PipoReferenceDecoder(self.models[system])


def run_job(systems: _Systems, job: _Job, config: "EvalConfig") -> tuple[list[RunRecord], float, float]:
    """The k samples of one task; returns (records, decode seconds, scoring seconds). For a PIPO system
    with a teacher loaded, every proposed draft is scored for calibration."""
    task = systems.tasks[job.family][job.index]
    decoder = systems.decoder(job.system)
    pad = None if job.system == TEACHER else systems.models[job.system].config.pad_token_id
    records, decode_s, score_s = [], 0.0, 0.0
    for sample in range(config.k):
        start = time.perf_counter()
        result = solve_with_tools(
            decoder,
            systems.tokenizer,
            task.question,
            params=_params(config, task, sample, job.tau),
            max_turns=config.max_turns,
        )
        decode_s += time.perf_counter() - start
        start = time.perf_counter()
        scored: list[tuple[float, float]] = []
        if systems.teacher is not None and pad is not None:
            for turn in result.turns:
                scored += draft_acceptance(systems.teacher, turn.prompt_ids, turn.steps, pad)
        score_s += time.perf_counter() - start
        records.append(
            RunRecord(
                job.system,
                job.tau,
                job.family,
                job.index,
                sample,
                check(task, result.final_text),
                result.stats,
                result.stop,
                tuple(scored),
            )
        )
    return records, decode_s, score_s


# One worker process's state: its own copy of the models, loaded once by `_init_worker`.
_WORKER: dict[str, Any] = {}


def exit_with_parent() -> None:
    """In a spawned worker, end this process as soon as its parent process ends, however it ends.

    A pool's workers hold both ends of their job queue, so when the evaluating process is killed they
    never see end-of-file and would wait forever, each holding its copy of the models."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_worker(config: "EvalConfig", threads: int) -> None:
    exit_with_parent()
    torch.set_num_threads(threads)
    _WORKER["systems"] = _Systems.load(config)
    _WORKER["config"] = config


def _worker_job(job: _Job) -> tuple[list[RunRecord], float, float]:
    return run_job(_WORKER["systems"], job, _WORKER["config"])


def _run_jobs(
    config: "EvalConfig", systems: _Systems | None, jobs: list[_Job]
) -> Iterator[tuple[_Job, tuple[list[RunRecord], float, float]]]:
    """Run the jobs in order, in this process with `systems` (workers=1) or spread over worker processes
    that load their own, each with `torch.get_num_threads() // workers` threads (at least one). Results
    come back in job order."""
    if systems is not None:
        for job in jobs:
            yield job, run_job(systems, job, config)
        return
    threads = max(1, torch.get_num_threads() // config.workers)
    context = multiprocessing.get_context("spawn")  # forking a process that already ran torch can hang
    with ProcessPoolExecutor(config.workers, context, _init_worker, (config, threads)) as pool:
        yield from zip(jobs, pool.map(_worker_job, jobs), strict=True)


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def calibration_dict(cal: Calibration) -> dict[str, Any]:
    return {
        "ece": cal.ece,
        "count": cal.count,
        "bins": [vars(b) for b in cal.bins],
    }


def summarize(records: Sequence[RunRecord], num_bins: int = 10) -> dict[str, Any]:
    """The metrics of one group of runs (one system, one tau, one family or all)."""
    by_task: dict[tuple[str, int], list[bool]] = defaultdict(list)
    for r in records:
        by_task[(r.family, r.task)].append(r.correct)
    stats = [r.stats for r in records]
    tokens, steps = sum(s.tokens for s in stats), sum(s.steps for s in stats)
    proposed, committed = sum(s.drafts_proposed for s in stats), sum(s.drafts_committed for s in stats)
    decode_s = sum(s.decode_s for s in stats)
    scored = [pair for r in records for pair in r.scored]
    cal = expected_calibration_error([c for c, _ in scored], [a for _, a in scored], num_bins)
    return {
        "runs": len(records),
        "tasks": len(by_task),
        "avg_at_k": _mean([float(r.correct) for r in records]),
        "pass_at_k": _mean([float(any(v)) for v in by_task.values()]),
        "tokens_per_step": tokens / steps if steps else None,
        "tokens": tokens,
        "steps": steps,
        "turns": sum(s.turns for s in stats),
        "drafts_proposed": proposed,
        "drafts_committed": committed,
        "commit_rate": committed / proposed if proposed else None,
        "ttft_s": _mean([s.ttft_s for s in stats if s.ttft_s is not None]),
        "tpot_s": _mean([s.tpot_s for s in stats if s.tpot_s is not None]),
        "tokens_per_s": tokens / decode_s if decode_s > 0 else None,
        "tool_s": sum(s.tool_s for s in stats),
        "stopped": dict(sorted(_count(r.stop for r in records).items())),
        "ece": cal.ece,
        "drafts_scored": cal.count,
        "mean_conf": _mean([c for c, _ in scored]),
        "mean_alpha": _mean([a for _, a in scored]),
    }


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for v in values:
        out[str(v)] += 1
    return out


def table_rows(records: Sequence[RunRecord], families: Sequence[str], num_bins: int) -> list[dict[str, Any]]:
    groups: dict[tuple[str, float | None], list[RunRecord]] = defaultdict(list)
    for r in records:
        groups[(r.system, r.tau)].append(r)
    rows = []
    for (system, tau), group in groups.items():
        for family in [*families, ALL_FAMILIES]:
            members = group if family == ALL_FAMILIES else [r for r in group if r.family == family]
            rows.append({"system": system, "tau": tau, "family": family, **summarize(members, num_bins)})
    return rows


def calibration_report(records: Sequence[RunRecord], num_bins: int) -> dict[str, Any]:
    """Per PIPO system: the reliability bins pooled over taus, and per tau."""
    out: dict[str, Any] = {}
    for system in dict.fromkeys(r.system for r in records if r.tau is not None):
        mine = [r for r in records if r.system == system]
        by_tau: dict[str, Any] = {}
        for tau in dict.fromkeys(r.tau for r in mine):
            pairs = [p for r in mine if r.tau == tau for p in r.scored]
            cal = expected_calibration_error([c for c, _ in pairs], [a for _, a in pairs], num_bins)
            by_tau[f"{tau:g}"] = calibration_dict(cal)
        pooled = [p for r in mine for p in r.scored]
        cal = expected_calibration_error([c for c, _ in pooled], [a for _, a in pooled], num_bins)
        out[system] = {"pooled": calibration_dict(cal), "by_tau": by_tau}
    return out


def _load_models(config: EvalConfig) -> dict[str, PipoModel]:
    models = {MAIN: load_pipo(config.model_dir).to(config.device)}
    vocab = models[MAIN].config.backbone["vocab_size"]
    for name, path in config.extra_models.items():
        model = load_pipo(path).to(config.device)
        if model.config.backbone["vocab_size"] != vocab:
            raise ValueError(f"extra model {name!r} at {path} does not share the main model's vocabulary")
        models[name] = model
    return models


def run_evaluation(config: EvalConfig) -> dict[str, Any]:
    """Run everything, write `eval.json` and `eval.png` into `config.out_dir`, and return the report.

    Timings are summed over jobs, so with several workers `decode_s` is process time, not wall time."""
    from pipo_agent.backends.eval.plot import plot_report

    started = time.perf_counter()
    families = config.family_list()
    # With workers, each worker loads the models and the main process none of them.
    systems = _Systems.load(config) if config.workers == 1 else None
    load_s = time.perf_counter() - started if systems is not None else None
    timings: dict[str, Any] = {"load_s": load_s, "decode_s": {}, "scoring_s": {}}
    runs: list[tuple[str, float | None]] = [(TEACHER, None)] if config.teacher_dir is not None else []
    runs += [(name, tau) for name in (MAIN, *config.extra_models) for tau in config.taus]
    jobs = [
        _Job(name, tau, family, index)
        for name, tau in runs
        for family in families
        for index in range(config.n)
    ]
    records: list[RunRecord] = []
    with tqdm(total=len(jobs) * config.k, desc="eval", disable=not config.progress) as bar:
        for job, (found, decode_s, score_s) in _run_jobs(config, systems, jobs):
            records += found
            key = TEACHER if job.tau is None else f"{job.system}@{job.tau:g}"
            timings["decode_s"][key] = timings["decode_s"].get(key, 0.0) + decode_s
            if job.tau is not None:
                timings["scoring_s"][key] = timings["scoring_s"].get(key, 0.0) + score_s
            bar.set_postfix_str(key)
            bar.update(config.k)
    timings["total_s"] = time.perf_counter() - started
    report = {
        "config": config.model_dump(mode="json"),
        "environment": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "workers": config.workers,
        },
        "rows": table_rows(records, families, config.num_bins),
        "calibration": calibration_report(records, config.num_bins),
        "timings": timings,
    }
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / JSON_NAME).write_text(json.dumps(report, indent=2) + "\n")
    plot_report(report, out / PLOT_NAME)
    logger.info("evaluation written to %s (%.0f s)", out, timings["total_s"])
    return report
