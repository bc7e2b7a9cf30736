"""One command from nothing to the shipped default model:

    tasks -> tokenizer -> AR teacher -> PIPO SFT -> PIPO OPD -> checkpoint (+ tokenizer) in `out_dir/pipo`

Each stage writes `out_dir/<stage>/final`; a rerun skips finished stages and resumes an interrupted one
from its last periodic checkpoint. Timings, sizes and parameter counts go to `out_dir/manifest.json`.
"""

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from pipo_agent.backends.model.checkpoint import load_pipo, save_pipo
from pipo_agent.backends.model.confidence import build_confidence_head
from pipo_agent.backends.train.config import PipelineConfig
from pipo_agent.backends.train.data import TurnSample, batch_sequences, batch_turns
from pipo_agent.backends.train.opd import train_opd
from pipo_agent.backends.train.sft import student_from_teacher, train_sft
from pipo_agent.backends.train.teacher import train_teacher
from pipo_agent.backends.train.tokenizer import build_tokenizer, save_tokenizer
from pipo_agent.tasks import TaskMix, generate_mixture, render_chat, solve

logger = logging.getLogger(__name__)


def _conversations(
    n: int, seed: int, mix: TaskMix | None = None
) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Gold conversations of `n` tasks from `mix` (the default family/difficulty mixture when None)."""
    out = []
    for task in generate_mixture(n, seed=seed, mix=mix):
        trajectory = solve(task)
        out.append(([dict(m) for m in trajectory.messages], [dict(t) for t in trajectory.tools]))
    return out


def tokenizer_source(cfg: PipelineConfig) -> Path | None:
    """Where a run takes its tokenizer from instead of training one: `data.tokenizer_from`, else the folder
    (or, for a teacher saved inside a PIPO checkpoint, the parent folder) of a checkpoint it continues.
    A continued model must keep the token ids it was trained with, so a continuation without a saved
    tokenizer is an error rather than a silently retrained vocabulary."""
    if cfg.data.tokenizer_from is not None:
        path = Path(cfg.data.tokenizer_from)
        if not (path / "tokenizer.json").is_file():
            raise FileNotFoundError(f"data.tokenizer_from={path} holds no tokenizer.json")
        return path
    for field, init in (("sft.init_from", cfg.sft.init_from), ("teacher.init_from", cfg.teacher.init_from)):
        if init is None:
            continue
        for candidate in (Path(init), Path(init).parent):
            if (candidate / "tokenizer.json").is_file():
                return candidate
        raise FileNotFoundError(
            f"{field}={init} has no tokenizer.json beside it; set data.tokenizer_from to the tokenizer "
            "that checkpoint was trained with"
        )
    return None


def _tokenizer(cfg: PipelineConfig, convs: list[Any], out: Path) -> PreTrainedTokenizerBase:
    path = out / "tokenizer"
    if (path / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(str(path))
    source = tokenizer_source(cfg)
    if source is not None:
        tok = PreTrainedTokenizerFast.from_pretrained(str(source))
        save_tokenizer(tok, path)
        return tok
    texts = [render_chat(msgs, tools, add_generation_prompt=False) for msgs, tools in convs]
    tok = build_tokenizer(texts, vocab_size=cfg.data.vocab_size)
    save_tokenizer(tok, path)
    return tok


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def _finish(manifest: dict[str, Any], out: Path, t0: float) -> dict[str, Any]:
    """Write the manifest of a run stopped early (`stop_after`) and return it."""
    manifest["total_seconds"] = round(time.time() - t0, 1)
    manifest["stopped_after"] = list(manifest["stages"])[-1]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _ablation_head(path: str, kind: str) -> torch.nn.Module:
    source = load_pipo(path)
    if source.config.confidence_head != kind:
        raise ValueError(
            f"sft.init_ablation_from={path} has a {source.config.confidence_head!r} confidence head; "
            f"the ablation head is {kind!r}"
        )
    head: torch.nn.Module = source.confidence_head
    return head


def digit_weights(tok: PreTrainedTokenizerBase, vocab_size: int, weight: float) -> torch.Tensor | None:
    """`[vocab_size]` loss weights: `weight` for tokens whose text holds a digit, 1 elsewhere (None if 1)."""
    if weight == 1.0:
        return None
    out = torch.ones(vocab_size)
    for token_id in range(min(vocab_size, len(tok))):
        if any(ch.isdigit() for ch in tok.decode([token_id])):
            out[token_id] = weight
    return out


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    torch.set_num_threads(cfg.threads)
    if cfg.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {cfg.device!r} was asked for but torch sees no CUDA device")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline_config.json").write_text(cfg.model_dump_json(indent=2))
    manifest: dict[str, Any] = {"stages": {}}
    t0 = time.time()

    convs = _conversations(cfg.data.train_tasks, cfg.data.train_seed, cfg.data.task_mix())
    tok = _tokenizer(cfg, convs, out)
    pad, eos = int(tok.pad_token_id), int(tok.eos_token_id)
    eos_ids = tuple(sorted({eos, int(tok.convert_tokens_to_ids("<|endoftext|>"))}))
    sequences = [s for s in batch_sequences(tok, convs) if len(s[0]) <= cfg.data.max_tokens]
    turns: list[TurnSample] = [
        turn
        for turn in batch_turns(tok, convs)
        if len(turn.prompt_ids) + len(turn.response_ids) <= cfg.data.max_tokens
    ]
    manifest["data"] = {
        "conversations": len(convs),
        "teacher_sequences": len(sequences),
        "teacher_tokens": sum(len(s[0]) for s in sequences),
        "sft_turns": len(turns),
        "sft_tokens": sum(len(t.prompt_ids) + len(t.response_ids) for t in turns),
        "seconds": round(time.time() - t0, 1),
    }
    logger.info("data: %s", manifest["data"])

    stage_t = time.time()
    teacher_dir = out / "teacher"
    shipped_teacher = Path(cfg.sft.init_from) / "teacher" if cfg.sft.init_from else None
    teacher: PreTrainedModel | None = None
    if (teacher_dir / "final" / "config.json").is_file():
        teacher = AutoModelForCausalLM.from_pretrained(str(teacher_dir / "final")).float().eval()
    elif (
        cfg.teacher.init_from is None
        and shipped_teacher is not None
        and (shipped_teacher / "config.json").is_file()
    ):
        # Continuing a shipped PIPO model (which carries its AR teacher): keep that teacher for OPD.
        teacher = AutoModelForCausalLM.from_pretrained(str(shipped_teacher)).float().eval()
        teacher.save_pretrained(teacher_dir / "final")
        manifest["teacher_from"] = str(shipped_teacher)
    elif cfg.sft.init_from is not None and cfg.teacher.init_from is None and cfg.stop_after == "sft":
        # An SFT-only continuation needs no teacher (only OPD reads one); a later rerun up to OPD must
        # then name one (teacher.init_from) or train it.
        manifest["teacher_skipped"] = "sft-only continuation of a checkpoint without a teacher folder"
    else:
        teacher = train_teacher(cfg.teacher, tok, sequences, teacher_dir, cfg.device)
    # Each stage's checkpoint carries its tokenizer, so a later run can continue from it directly.
    if teacher is not None and not (teacher_dir / "final" / "tokenizer.json").is_file():
        save_tokenizer(tok, teacher_dir / "final")
    manifest["stages"]["teacher"] = round(time.time() - stage_t, 1)
    if cfg.stop_after == "teacher":
        return _finish(manifest, out, t0)

    stage_t = time.time()
    sft_dir = out / "sft"
    ablation = cfg.ablation_head
    if ablation == cfg.sft.confidence_head:
        ablation = None
    if (sft_dir / "final" / "config.json").is_file():
        student = load_pipo(sft_dir / "final")
        extra = [load_pipo(sft_dir / f"final-{ablation}").confidence_head] if ablation else []
    else:
        if cfg.sft.init_from:
            student = load_pipo(cfg.sft.init_from)
            manifest["sft_init_from"] = cfg.sft.init_from
        else:
            assert teacher is not None  # skipped only when the student continues a checkpoint
            student = student_from_teacher(cfg.sft, teacher, pad, eos_ids)
        if ablation and cfg.sft.init_ablation_from:
            extra = [_ablation_head(cfg.sft.init_ablation_from, ablation)]
            manifest["sft_init_ablation_from"] = cfg.sft.init_ablation_from
        else:
            extra = [build_confidence_head(ablation, student.config.hidden_size)] if ablation else []
        weights = digit_weights(tok, student.config.backbone["vocab_size"], cfg.sft.digit_weight)
        student = train_sft(cfg.sft, student, turns, sft_dir, extra, cfg.device, weights)
        for final in sft_dir.glob("final*"):
            save_tokenizer(tok, final)
    manifest["stages"]["sft"] = round(time.time() - stage_t, 1)
    if cfg.stop_after == "sft":
        return _finish(manifest, out, t0)

    if teacher is None:
        raise ValueError(
            f"{out} has no teacher for OPD: its SFT continued {cfg.sft.init_from}, which carries none; "
            "set teacher.init_from to the AR teacher to distil from"
        )
    stage_t = time.time()
    opd_dir = out / "opd"
    if (opd_dir / "final" / "config.json").is_file():
        student = load_pipo(opd_dir / "final")
    else:
        opd_convs = _conversations(cfg.data.opd_tasks, cfg.data.train_seed + 1, cfg.data.task_mix())
        prompts = [
            turn.prompt_ids
            for turn in batch_turns(tok, opd_convs)
            if len(turn.prompt_ids) + len(turn.response_ids) <= cfg.data.max_tokens
        ]
        student = train_opd(cfg.opd, student, teacher, prompts, opd_dir, extra, cfg.device)
    manifest["stages"]["opd"] = round(time.time() - stage_t, 1)

    final = out / "pipo"
    if final.exists():
        shutil.rmtree(final)
    save_pipo(student, final)
    save_tokenizer(tok, final)
    if ablation:
        variant = out / f"pipo-{ablation}"
        if variant.exists():
            shutil.rmtree(variant)
        shutil.copytree(opd_dir / f"final-{ablation}", variant)
        save_tokenizer(tok, variant)
    teacher.save_pretrained(out / "teacher" / "final")
    manifest["total_seconds"] = round(time.time() - t0, 1)
    manifest["checkpoint_mb"] = round(_size_mb(final), 2)
    manifest["student_parameters"] = sum(p.numel() for p in student.parameters())
    manifest["teacher_parameters"] = sum(p.numel() for p in teacher.parameters())
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def export_model(
    run_dir: str | Path, dest: str | Path, dtype: torch.dtype = torch.bfloat16
) -> dict[str, float]:
    """Copy a finished run's PIPO model, tokenizer and AR teacher into `dest` (e.g. the shipped default),
    casting weights to `dtype`; bfloat16 halves the size and loads back as float32."""
    run, target = Path(run_dir), Path(dest)
    model = load_pipo(run / "pipo")
    tok = PreTrainedTokenizerFast.from_pretrained(str(run / "pipo"))
    teacher = AutoModelForCausalLM.from_pretrained(str(run / "teacher" / "final"))
    for stale in (target / "teacher", target):
        for f in stale.glob("*"):
            if f.is_file():
                f.unlink()
    save_pipo(model, target, dtype=dtype)
    save_tokenizer(tok, target)
    teacher.to(dtype).save_pretrained(str(target / "teacher"))
    manifest = run / "manifest.json"
    if manifest.is_file():
        shutil.copy(manifest, target / "training_manifest.json")
    return {"mb": round(_size_mb(target), 2)}
