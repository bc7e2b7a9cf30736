"""Pair layout of training sequences.

Inference emits pairs `(token1, token2)`; a rejected draft becomes PAD and the text *re-pairs*: the
backbone produces the rejected position's token as the next token1 (`x2 PAD | x3 x4`). SFT mimics that:
walking the response, each pair is split with probability `ratio` into `(x_i, PAD)` and pairing resumes
at `x_{i+1}`. PADs therefore sit only at odd indices and are never targets.
"""

import random
from dataclasses import dataclass

from pipo_agent.backends.model.constants import IGNORE_INDEX, PAIR


@dataclass(frozen=True)
class PairedSample:
    input_ids: list[int]  # even length; prompt (padded to even) then the response pair stream
    labels: list[int]  # IGNORE_INDEX on the prompt and on every PAD
    prompt_len: int  # even


def pad_prompt(prompt_ids: list[int], pad_id: int) -> list[int]:
    return [*prompt_ids, pad_id] if len(prompt_ids) % PAIR else list(prompt_ids)


def pair_response(
    prompt_ids: list[int],
    response_ids: list[int],
    pad_id: int,
    ratio: float = 0.0,
    rng: random.Random | None = None,
) -> PairedSample:
    """Lay out prompt + response as inference would, splitting pairs with probability `ratio`."""
    if ratio and rng is None:
        raise ValueError("a random.Random is needed when ratio > 0")
    prompt = pad_prompt(prompt_ids, pad_id)
    ids = list(prompt)
    labels = [IGNORE_INDEX] * len(prompt)
    i, n = 0, len(response_ids)
    while i < n:
        split = i + 1 < n and ratio > 0 and rng is not None and rng.random() < ratio
        if i + 1 < n and not split:
            ids += response_ids[i : i + 2]
            labels += response_ids[i : i + 2]
            i += 2
        else:
            ids += [response_ids[i], pad_id]
            labels += [response_ids[i], IGNORE_INDEX]
            i += 1
    return PairedSample(input_ids=ids, labels=labels, prompt_len=len(prompt))


def rollout_sample(prompt_ids: list[int], slots: list[int], pad_id: int) -> PairedSample:
    """An OPD sequence: padded prompt + the decoder's slot stream (PADs kept), padded to even."""
    prompt = pad_prompt(prompt_ids, pad_id)
    ids = prompt + list(slots)
    labels = [IGNORE_INDEX] * len(prompt) + [IGNORE_INDEX if t == pad_id else t for t in slots]
    if len(ids) % PAIR:
        ids.append(pad_id)
        labels.append(IGNORE_INDEX)
    return PairedSample(input_ids=ids, labels=labels, prompt_len=len(prompt))
