"""Token-budget batches of similar-length sequences, deterministic per (seed, epoch)."""

import random
from collections.abc import Sequence

import torch

from pipo_agent.backends.model.constants import IGNORE_INDEX


def make_batches(lengths: Sequence[int], token_budget: int, max_batch: int = 64) -> list[list[int]]:
    """Group indices sorted by length so that `len(batch) * longest <= token_budget`."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = max(lengths[i], *(lengths[j] for j in current)) if current else lengths[i]
        if current and ((len(current) + 1) * longest > token_budget or len(current) >= max_batch):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


class EpochSchedule:
    """Step s -> a batch of indices; every sequence once per epoch, batch order shuffled per epoch."""

    def __init__(self, lengths: Sequence[int], token_budget: int, seed: int) -> None:
        self.batches = make_batches(lengths, token_budget)
        self.seed = seed
        self._orders: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.batches)

    def batch(self, step: int) -> list[int]:
        epoch, k = divmod(step, len(self.batches))
        if epoch not in self._orders:
            order = list(range(len(self.batches)))
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
            self._orders = {epoch: order}
        return self.batches[self._orders[epoch][k]]


def collate(
    seqs: Sequence[tuple[list[int], list[int]]], pad_id: int, multiple: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad (ids, labels) pairs to one length (a multiple of `multiple`); causal models need no mask."""
    longest = max(len(ids) for ids, _ in seqs)
    longest += (-longest) % multiple
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), longest), IGNORE_INDEX, dtype=torch.long)
    for row, (x, y) in enumerate(seqs):
        ids[row, : len(x)] = torch.tensor(x, dtype=torch.long)
        labels[row, : len(y)] = torch.tensor(y, dtype=torch.long)
    return ids, labels
