"""Calibration of the confidence head against measured draft acceptance.

The acceptance of a proposed draft y is α = min(1, p_t(y) / p_s(y)) (PIPO_SPEC A3, the OPD target):
p_s is the student's MTP probability of y (the step's `logprob2`, temperature 1 after PAD suppression) and
p_t the AR teacher's, from its logits at the draft's token1 in the PAD-free sequence (prompt + real tokens),
computed afterwards by one teacher-forced pass per turn.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from pipo_agent.backends.decode import DecodeStep


@dataclass(frozen=True)
class CalibrationBin:
    low: float
    high: float
    count: int
    mean_conf: float | None
    mean_alpha: float | None


@dataclass(frozen=True)
class Calibration:
    ece: float | None  # None without any scored draft
    count: int
    bins: tuple[CalibrationBin, ...]


def expected_calibration_error(
    conf: Sequence[float], alpha: Sequence[float], num_bins: int = 10
) -> Calibration:
    """ECE = sum over equal-width confidence bins of (bin share) * |mean conf - mean α|; the last bin
    includes 1.0."""
    if len(conf) != len(alpha):
        raise ValueError(f"{len(conf)} confidences but {len(alpha)} acceptances")
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    members: list[list[int]] = [[] for _ in range(num_bins)]
    for i, c in enumerate(conf):
        members[min(int(c * num_bins), num_bins - 1)].append(i)
    bins, gap = [], 0.0
    for b, idx in enumerate(members):
        mean_c = sum(conf[i] for i in idx) / len(idx) if idx else None
        mean_a = sum(alpha[i] for i in idx) / len(idx) if idx else None
        if mean_c is not None and mean_a is not None:
            gap += len(idx) * abs(mean_c - mean_a)
        bins.append(CalibrationBin(b / num_bins, (b + 1) / num_bins, len(idx), mean_c, mean_a))
    total = len(conf)
    return Calibration(ece=gap / total if total else None, count=total, bins=tuple(bins))


@torch.inference_mode()
def draft_acceptance(
    teacher: PreTrainedModel, prompt_ids: Sequence[int], steps: Sequence[DecodeStep], pad_token_id: int
) -> list[tuple[float, float]]:
    """(conf, α) for every proposed draft of one PIPO turn; needs steps decoded with `logprobs=True`."""
    positions, drafted = [], []
    length = len(prompt_ids)  # index of the next step's token1 in the PAD-free sequence
    real: list[int] = []
    for step in steps:
        if step.draft is not None:
            if step.conf is None or step.logprob2 is None:
                raise ValueError("draft acceptance needs steps decoded with SamplingParams(logprobs=True)")
            positions.append(length)
            drafted.append(step)
        kept = [t for t in step.slots if t != pad_token_id]
        real.extend(kept)
        length += len(kept)
    if not drafted:
        return []
    device = next(teacher.parameters()).device
    ids = torch.tensor([[*prompt_ids, *real]], device=device)  # [1, T]
    hidden = teacher.model(input_ids=ids).last_hidden_state[0, positions]  # [n, H]
    logp = teacher.lm_head(hidden).float().log_softmax(-1)  # [n, V]
    out = []
    for row, step in enumerate(drafted):
        assert step.draft is not None and step.conf is not None and step.logprob2 is not None
        log_ratio = float(logp[row, step.draft]) - step.logprob2
        out.append((step.conf, math.exp(min(0.0, log_ratio))))
    return out
