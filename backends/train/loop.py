"""A small optimizer loop shared by every stage: AdamW, warmup + cosine decay, gradient clipping,
a progress bar, periodic checkpoints and exact resume after an interruption.

Batches are a pure function of the step number (see `batching.EpochSchedule`), so resuming needs only
the model, the optimizer and the RNG states.
"""

import logging
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from pipo_agent.backends.train.config import OptimConfig

logger = logging.getLogger(__name__)

STATE_NAME = "train_state.pt"

StepFn = Callable[[int], tuple[torch.Tensor, dict[str, float]]]


def lr_at(step: int, cfg: OptimConfig) -> float:
    warmup = int(cfg.warmup_ratio * cfg.max_steps)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, cfg.max_steps - warmup)
    floor = cfg.min_lr_ratio
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _save(path: Path, model: nn.Module, opt: torch.optim.Optimizer, step: int) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "step": step,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "py_rng": random.getstate(),
        },
        tmp,
    )
    tmp.replace(path)  # atomic: a kill during the save leaves the previous checkpoint intact


def train(
    model: nn.Module,
    step_fn: StepFn,
    cfg: OptimConfig,
    work_dir: str | Path,
    desc: str,
) -> dict[str, float]:
    """Run `cfg.max_steps` optimizer steps of `step_fn(step) -> (loss, metrics)`, resuming from `work_dir`."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    state_path = work / STATE_NAME
    start = 0
    seed_everything(cfg.seed)
    if state_path.is_file():
        state: dict[str, Any] = torch.load(state_path, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["py_rng"])
        start = int(state["step"])
        logger.info("%s: resuming at step %d from %s", desc, start, state_path)
    model.train()
    metrics: dict[str, float] = {}
    ema: dict[str, float] = {}
    bar = tqdm(range(start, cfg.max_steps), desc=desc, initial=start, total=cfg.max_steps, dynamic_ncols=True)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss, metrics = step_fn(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        for key, value in metrics.items():
            ema[key] = value if key not in ema else 0.9 * ema[key] + 0.1 * value
        bar.set_postfix({k: f"{v:.3f}" for k, v in ema.items() if not k.startswith("n_")})
        if (step + 1) % cfg.save_every == 0 and step + 1 < cfg.max_steps:
            _save(state_path, model, opt, step + 1)
    model.eval()
    return ema
