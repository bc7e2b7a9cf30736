"""Stage 2: PIPO SFT — a student made from the AR teacher learns pairs with re-pairing PAD augmentation."""

import copy
import random
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel

from pipo_agent.backends.model.checkpoint import save_pipo
from pipo_agent.backends.model.constants import PAIR
from pipo_agent.backends.model.pipo import PipoModel
from pipo_agent.backends.train.augment import PairedSample, pair_response
from pipo_agent.backends.train.batching import EpochSchedule, collate
from pipo_agent.backends.train.config import SFTConfig
from pipo_agent.backends.train.data import TurnSample
from pipo_agent.backends.train.loop import train
from pipo_agent.backends.train.lora import add_lora, merge_lora
from pipo_agent.backends.train.losses import sft_losses


def freeze_embeddings(model: PipoModel) -> None:
    """Embeddings and the LM head (tied or not) stay frozen in every PIPO stage."""
    model.embed_tokens.weight.requires_grad_(False)
    model.lm_head.weight.requires_grad_(False)


def student_from_teacher(
    cfg: SFTConfig, teacher: PreTrainedModel, pad_id: int, eos_ids: tuple[int, ...]
) -> PipoModel:
    return PipoModel.from_teacher(
        teacher,
        pad_token_id=pad_id,
        eos_token_ids=eos_ids,
        compressor_type=cfg.compressor_type,
        confidence_head=cfg.confidence_head,
    )


def with_head(model: PipoModel, head: nn.Module, name: str) -> PipoModel:
    """A copy of `model` whose confidence head is `head` (registered as `name`)."""
    variant = copy.deepcopy(model)
    variant.confidence_head = copy.deepcopy(head)
    variant.config = model.config.model_copy(update={"confidence_head": name})
    return variant


def head_name(head: nn.Module) -> str:
    return "token" if getattr(head, "uses_draft", False) else "hm"


def sft_sample(turn: TurnSample, pad: int, cfg: SFTConfig, rng: random.Random) -> PairedSample:
    """One SFT sequence laid out as inference pairs it: with probability `cfg.full_pad_share` every response
    pair is split (the τ ≥ 1 layout), otherwise a share ~ U[0, max_pad_ratio) of them."""
    if cfg.full_pad_share and rng.random() < cfg.full_pad_share:
        ratio = 1.0
    else:
        ratio = rng.uniform(0.0, cfg.max_pad_ratio)
    return pair_response(turn.prompt_ids, turn.response_ids, pad, ratio, rng)


def train_sft(
    cfg: SFTConfig,
    model: PipoModel,
    turns: Sequence[TurnSample],
    work_dir: str | Path,
    extra_heads: Sequence[nn.Module] = (),
    device: str | torch.device = "cpu",
    token_weights: torch.Tensor | None = None,
) -> PipoModel:
    """SFT of `model`; `extra_heads` (other confidence-head variants) learn alongside on detached
    inputs — they do not change the model — and are saved as `final-<variant>` checkpoints.
    `token_weights` (`[V]`) weights the backbone and MTP losses by target token."""
    work = Path(work_dir)
    pad = model.config.pad_token_id
    if cfg.lora is not None:
        add_lora(model, cfg.lora)
    freeze_embeddings(model)
    if cfg.frozen_model:
        if not extra_heads:
            raise ValueError(
                "sft.frozen_model trains only the ablation head, and this run has none: set ablation_head "
                "to a confidence-head kind other than the model's own"
            )
        for param in model.parameters():
            param.requires_grad_(False)
    # Splits lengthen a sequence by at most its response length (all split); budget for the expected growth.
    growth = cfg.full_pad_share + (1 - cfg.full_pad_share) * cfg.max_pad_ratio / 2
    lengths = [int(len(t.prompt_ids) + 1 + len(t.response_ids) * (1 + growth)) for t in turns]
    schedule = EpochSchedule(lengths, cfg.optim.token_budget, cfg.optim.seed)
    model.to(device)
    for head in extra_heads:
        head.to(device)
    gen = torch.Generator(device=device).manual_seed(cfg.optim.seed)
    weights = None if token_weights is None else token_weights.to(device)

    def step_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        rng = random.Random(cfg.optim.seed * 7919 + step)
        seqs = []
        for i in schedule.batch(step):
            sample = sft_sample(turns[i], pad, cfg, rng)
            seqs.append((sample.input_ids, sample.labels))
        ids, labels = collate(seqs, pad, multiple=PAIR)
        ids, labels = ids.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        parts = sft_losses(
            model, model(ids), labels, cfg.lambda_mtp, cfg.lambda_conf, gen, extra_heads, weights
        )
        metrics = {"bb": float(parts.backbone), "mtp": float(parts.mtp), "conf": float(parts.conf)}
        metrics.update(
            {f"conf_{head_name(h)}": float(c) for h, c in zip(extra_heads, parts.extra_conf, strict=True)}
        )
        return parts.total, metrics

    container = nn.ModuleDict({"model": model, "extra_heads": nn.ModuleList(extra_heads)})
    train(container, step_fn, cfg.optim, work, desc="pipo-sft")
    if cfg.lora is not None:
        merge_lora(model)
    save_pipo(model, work / "final")
    for head in extra_heads:
        save_pipo(with_head(model, head, head_name(head)), work / f"final-{head_name(head)}")
    return model
