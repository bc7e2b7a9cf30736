"""How SGLang addresses a batch of packed sequences and their state slots."""

import itertools

import torch


def spans(offsets: torch.Tensor | None, total: int) -> list[tuple[int, int]]:
    """`(start, end)` of each sequence from `offsets` (`query_start_loc` / `cu_seqlens`, `[N + 1]` from 0);
    one sequence of `total` tokens when there are none."""
    if offsets is None:
        return [(0, total)]
    return list(itertools.pairwise(int(o) for o in offsets.tolist()))


def slots(indices: torch.Tensor | None, count: int) -> list[int]:
    """The state slot of each of `count` sequences: `indices`, or `0 ... count - 1` when there are none."""
    if indices is None:
        return list(range(count))
    found = [int(i) for i in indices.tolist()]
    if len(found) != count:
        raise ValueError(f"{count} sequences but {len(found)} state slots")
    return found
