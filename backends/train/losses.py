"""PIPO losses on teacher-forced outputs.

Index alignment for `T` slots, `L = T/2` pairs (PIPO_SPEC Part B §8): backbone pair j predicts
`x_{2j+2}` (`labels[:, 2::2]`); the MTP at j is fed `x_{2j+2}` and predicts `x_{2j+3}` (`labels[:, 3::2]`).
Every mean is a token mean over that loss's own valid positions. Confidence targets and confidence-head
inputs are detached.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipo_agent.backends.model.constants import IGNORE_INDEX, PAIR
from pipo_agent.backends.model.pipo import PipoModel, PipoOutput


@dataclass
class LossParts:
    total: torch.Tensor
    backbone: torch.Tensor
    mtp: torch.Tensor
    conf: torch.Tensor
    n_backbone: int
    n_mtp: int
    extra_conf: tuple[torch.Tensor, ...] = ()


def targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`[B, T]` labels -> (backbone targets `[B, L-1]`, MTP targets `[B, L-1]`)."""
    return labels[:, PAIR::PAIR], labels[:, PAIR + 1 :: PAIR]


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    count = mask.sum()
    # A zero-weighted sum keeps every parameter in the graph when a batch has no valid position.
    return (values * mask).sum() / count.clamp(min=1)


def ce(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position CE `[B, n]` and the valid mask."""
    valid = target != IGNORE_INDEX
    safe = target.clamp(min=0)
    loss = F.cross_entropy(logits.flatten(0, 1).float(), safe.flatten(), reduction="none").view_as(safe)
    return loss, valid.float()


def conf_loss(
    model: PipoModel,
    out: PipoOutput,
    draft_ids: torch.Tensor,
    conf_target: torch.Tensor,
    valid: torch.Tensor,
    head: torch.nn.Module | None = None,
) -> torch.Tensor:
    """BCE of a confidence head (the model's own by default) on detached inputs against a detached
    target in [0, 1]."""
    h = out.hidden[:, :-1].detach()
    m = out.mtp_hidden.detach()
    logits = model.confidence_logits(h, m, draft_ids.clamp(min=0), out.logits2.detach(), head=head)
    bce = F.binary_cross_entropy_with_logits(logits.float(), conf_target.detach().float(), reduction="none")
    return masked_mean(bce, valid)


def sft_conf_target(
    head: torch.nn.Module, logits2: torch.Tensor, y_mtp: torch.Tensor, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(draft ids, target) for a confidence head in SFT.

    The published `hm` head learns q = p_s(gold), the expected acceptance under a deterministic teacher.
    The token-aware head is trained on a draft y sampled from p_s with the target 1[y == gold], the
    acceptance of that very token.
    """
    with torch.no_grad():
        probs = torch.softmax(logits2.float(), dim=-1)
        if getattr(head, "uses_draft", False):
            draft = torch.multinomial(probs.flatten(0, 1), 1, generator=generator).view(y_mtp.shape)
            return draft, (draft == y_mtp).float()
        draft = y_mtp.clamp(min=0)
        return draft, probs.gather(-1, draft.unsqueeze(-1)).squeeze(-1)


def sft_losses(
    model: PipoModel,
    out: PipoOutput,
    labels: torch.Tensor,
    lambda_mtp: float = 1.0,
    lambda_conf: float = 1.0,
    generator: torch.Generator | None = None,
    extra_heads: Sequence[torch.nn.Module] = (),
    token_weights: torch.Tensor | None = None,
) -> LossParts:
    """L_bb + λ_mtp L_mtp + λ_conf L_conf (+ λ_conf per extra head trained alongside, on detached inputs).

    With `token_weights` (`[V]`), L_bb and L_mtp are means weighted by each target's weight; the
    confidence losses stay plain means."""
    y_bb, y_mtp = targets(labels)
    bb, bb_valid = ce(out.logits1, y_bb)
    mtp, mtp_valid = ce(out.logits2, y_mtp)
    bb_w, mtp_w = bb_valid, mtp_valid
    if token_weights is not None:
        bb_w = bb_valid * token_weights[y_bb.clamp(min=0)]
        mtp_w = mtp_valid * token_weights[y_mtp.clamp(min=0)]
    confs = []
    for head in (model.confidence_head, *extra_heads):
        draft, target = sft_conf_target(head, out.logits2, y_mtp, generator)
        confs.append(conf_loss(model, out, draft, target, mtp_valid, head=head))
    l_bb, l_mtp = masked_mean(bb, bb_w), masked_mean(mtp, mtp_w)
    return LossParts(
        total=l_bb + lambda_mtp * l_mtp + lambda_conf * sum(confs, l_bb.new_zeros(())),
        backbone=l_bb.detach(),
        mtp=l_mtp.detach(),
        conf=confs[0].detach(),
        n_backbone=int(bb_valid.sum()),
        n_mtp=int(mtp_valid.sum()),
        extra_conf=tuple(c.detach() for c in confs[1:]),
    )


def pad_compacted_teacher_logits(
    teacher: torch.nn.Module, input_ids: torch.Tensor, pad_id: int
) -> torch.Tensor:
    """Teacher logits at every slot of `[1, T]`, computed on the PAD-free sequence.

    A non-PAD position gets its own teacher state; a PAD position gets the state of the previous non-PAD
    token (`gidx(p) = max(0, cumsum(keep)[p] - 1)`), i.e. the teacher conditioned on the PAD-free prefix.
    """
    if input_ids.shape[0] != 1:
        raise ValueError("PAD compaction works one sequence at a time")
    keep = input_ids[0] != pad_id  # [T]
    compact = input_ids[:, keep]  # [1, T']
    logits = teacher(input_ids=compact).logits  # [1, T', V]
    gidx = (torch.cumsum(keep.long(), 0) - 1).clamp(min=0)  # [T]
    return logits[:, gidx]  # [1, T, V]


def reverse_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, mode: str = "full", topk: int = 32
) -> torch.Tensor:
    """Analytic KL(p_s || p_t) per position `[..]`, on the full vocabulary or on the union of both top-k."""
    s = student_logits.float()
    t = teacher_logits.float()
    if mode == "full":
        log_s, log_t = torch.log_softmax(s, -1), torch.log_softmax(t, -1)
        return (log_s.exp() * (log_s - log_t)).sum(-1)
    if mode != "topk":
        raise ValueError(f"unknown KL mode {mode!r}; valid choices: full, topk")
    k = min(topk, s.shape[-1])
    union = torch.zeros_like(s, dtype=torch.bool)
    union.scatter_(-1, s.topk(k, -1).indices, True)
    union.scatter_(-1, t.topk(k, -1).indices, True)
    neg = torch.finfo(s.dtype).min
    log_s = torch.log_softmax(s.masked_fill(~union, neg), -1)
    log_t = torch.log_softmax(t.masked_fill(~union, neg), -1)
    return (log_s.exp() * (log_s - log_t)).masked_fill(~union, 0.0).sum(-1)


def acceptance(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, token: torch.Tensor
) -> torch.Tensor:
    """α = min(1, p_t(y) / p_s(y)) — the rejection-sampling acceptance of draft y; detached."""
    with torch.no_grad():
        log_s = torch.log_softmax(student_logits.float(), -1).gather(-1, token.unsqueeze(-1)).squeeze(-1)
        log_t = torch.log_softmax(teacher_logits.float(), -1).gather(-1, token.unsqueeze(-1)).squeeze(-1)
        return torch.exp(-(log_s - log_t).clamp(min=0.0))


def opd_losses(
    model: PipoModel,
    out: PipoOutput,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    input_ids: torch.Tensor,
    pad_id: int,
    kl_mode: str = "full",
    topk: int = 32,
    lambda_mtp: float = 1.0,
    lambda_conf: float = 1.0,
    extra_heads: Sequence[torch.nn.Module] = (),
) -> LossParts:
    """On-policy distillation losses for one rollout `[1, T]` (PIPO_SPEC Part B §3.3, Part A §A3).

    Backbone pair j is matched to the teacher at slot 2j+1, the MTP at j to slot 2j+2. MTP targets whose
    slot is PAD (a rejected draft) are filled with the student's argmax so the head still learns there.
    """
    y_bb, y_mtp = targets(labels)
    t_bb = teacher_logits[:, 1:-1:PAIR]  # [1, L-1, V] teacher at 2j+1 predicts x_{2j+2}
    t_mtp = teacher_logits[:, PAIR::PAIR]  # [1, L-1, V] teacher at 2j+2 predicts x_{2j+3}
    prompt_pairs = int((labels[0] == IGNORE_INDEX).long().cumprod(0).sum()) // PAIR
    positions = torch.arange(y_mtp.shape[1], device=labels.device)[None]
    in_response = positions >= prompt_pairs - 1  # MTP j predicts x_{2j+3}: response starts at 2j+3 >= P
    is_pad = input_ids[:, PAIR + 1 :: PAIR] == pad_id
    last_pair = positions == y_mtp.shape[1] - 1
    trailing_pad = is_pad & last_pair  # parity pad appended after the rollout
    filled = torch.where(is_pad, out.logits2.detach().argmax(-1), y_mtp)
    mtp_valid = (in_response & ~trailing_pad & (filled != IGNORE_INDEX)).float()
    bb_valid = (y_bb != IGNORE_INDEX).float()
    kl_bb = reverse_kl(out.logits1, t_bb, kl_mode, topk)
    kl_mtp = reverse_kl(out.logits2, t_mtp, kl_mode, topk)
    alpha = acceptance(out.logits2, t_mtp, filled.clamp(min=0))
    draft = filled.clamp(min=0)
    confs = [
        conf_loss(model, out, draft, alpha, mtp_valid, head=h) for h in (model.confidence_head, *extra_heads)
    ]
    conf = confs[0]
    l_bb, l_mtp = masked_mean(kl_bb, bb_valid), masked_mean(kl_mtp, mtp_valid)
    return LossParts(
        extra_conf=tuple(c.detach() for c in confs[1:]),
        total=l_bb + lambda_mtp * l_mtp + lambda_conf * sum(confs, l_bb.new_zeros(())),
        backbone=l_bb.detach(),
        mtp=l_mtp.detach(),
        conf=conf.detach(),
        n_backbone=int(bb_valid.sum()),
        n_mtp=int(mtp_valid.sum()),
    )
