"""Paged-KV test batches for the kernel tests, and the Triton mode they run in.

Without a CUDA device the Triton kernels run in Triton's CPU interpreter, which reads `TRITON_INTERPRET` when a
kernel is first launched; setting it here, before any test runs, is early enough.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@dataclass(frozen=True)
class PagedBatch:
    """Sequences scattered over a shuffled paged KV pool, plus their dense K/V to check against."""

    q: torch.Tensor  # [num_tokens, Hq, D], the new queries of every sequence, flattened
    k_cache: torch.Tensor  # [num_slots, Hkv, D]; slots no sequence owns hold NaN
    v_cache: torch.Tensor
    block_tables: torch.Tensor  # [B, max_blocks] int32; unused entries hold random block ids
    cu_seqlens_q: torch.Tensor  # [B + 1] int32
    context_lens: torch.Tensor  # [B] int32
    slot_mapping: torch.Tensor  # [num_tokens] int64, the slots of the new positions
    k_dense: list[torch.Tensor]  # per sequence [context_len, Hkv, D]
    v_dense: list[torch.Tensor]
    block_size: int
    scale: float

    @property
    def max_seqlen_q(self) -> int:
        return int((self.cu_seqlens_q[1:] - self.cu_seqlens_q[:-1]).max())


MakeBatch = Callable[..., PagedBatch]


def make_paged_batch(
    context_lens: list[int],
    new_lens: list[int],
    *,
    num_q_heads: int,
    num_kv_heads: int,
    head_dim: int,
    block_size: int,
    dtype: torch.dtype,
    device: str | torch.device,
    spare_blocks: int = 3,
    seed: int = 0,
) -> PagedBatch:
    """Random K/V per sequence, stored into physical blocks taken in shuffled order from a pool with spares."""
    assert all(0 <= n <= c for n, c in zip(new_lens, context_lens, strict=True))
    gen = torch.Generator().manual_seed(seed)
    blocks_per_seq = [-(-c // block_size) for c in context_lens]
    num_blocks = sum(blocks_per_seq) + spare_blocks
    max_blocks = max([*blocks_per_seq, 1]) + 1  # one more column than needed: unused entries must be ignored
    physical = torch.randperm(num_blocks, generator=gen).tolist()
    block_tables = torch.randint(0, num_blocks, (len(context_lens), max_blocks), generator=gen)
    k_cache = torch.full((num_blocks * block_size, num_kv_heads, head_dim), float("nan"))
    v_cache = torch.full_like(k_cache, float("nan"))
    k_dense, v_dense, new_slots = [], [], []
    for b, (context_len, num_blocks_b) in enumerate(zip(context_lens, blocks_per_seq, strict=True)):
        block_tables[b, :num_blocks_b] = torch.tensor(physical[:num_blocks_b], dtype=torch.long)
        physical = physical[num_blocks_b:]
        pos = torch.arange(context_len)
        slots = block_tables[b, pos // block_size] * block_size + pos % block_size  # [context_len]
        k = torch.randn(context_len, num_kv_heads, head_dim, generator=gen)
        v = torch.randn(context_len, num_kv_heads, head_dim, generator=gen)
        k_cache[slots], v_cache[slots] = k, v
        k_dense.append(k.to(dtype))
        v_dense.append(v.to(dtype))
        new_slots.append(slots[context_len - new_lens[b] :])
    num_tokens = sum(new_lens)
    q = torch.randn(num_tokens, num_q_heads, head_dim, generator=gen)
    cu_seqlens_q = torch.tensor([0, *torch.tensor(new_lens).cumsum(0).tolist()], dtype=torch.int32)
    return PagedBatch(
        q=q.to(dtype=dtype, device=device),
        k_cache=k_cache.to(dtype=dtype, device=device),
        v_cache=v_cache.to(dtype=dtype, device=device),
        block_tables=block_tables.to(dtype=torch.int32, device=device),
        cu_seqlens_q=cu_seqlens_q.to(device),
        context_lens=torch.tensor(context_lens, dtype=torch.int32, device=device),
        slot_mapping=torch.cat([torch.zeros(0, dtype=torch.long), *new_slots]).to(device),
        k_dense=[k.to(device) for k in k_dense],
        v_dense=[v.to(device) for v in v_dense],
        block_size=block_size,
        scale=head_dim**-0.5,
    )


@pytest.fixture
def make_batch() -> MakeBatch:
    return make_paged_batch


@pytest.fixture
def device() -> torch.device:
    """CUDA when present (compiled kernels), else CPU (the interpreter)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def dense_causal_attention(batch: PagedBatch) -> torch.Tensor:
    """Ground truth independent of paging: per sequence, SDPA in float64 over its dense K/V."""
    out = torch.zeros(batch.q.shape, dtype=torch.float64, device=batch.q.device)
    group = batch.q.shape[1] // batch.k_cache.shape[1]
    bounds = batch.cu_seqlens_q.tolist()
    for b, (k, v) in enumerate(zip(batch.k_dense, batch.v_dense, strict=True)):
        start, stop = bounds[b], bounds[b + 1]
        if start == stop:
            continue
        context_len = k.shape[0]
        q = batch.q[start:stop].double().transpose(0, 1)  # [Hq, n_b, D]
        k = k.double().repeat_interleave(group, dim=1).transpose(0, 1)  # [Hq, L, D]
        v = v.double().repeat_interleave(group, dim=1).transpose(0, 1)
        q_pos = torch.arange(context_len - (stop - start), context_len, device=q.device)
        visible = torch.arange(context_len, device=q.device)[None, :] <= q_pos[:, None]  # [n_b, L]
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=visible, scale=batch.scale)
        out[start:stop] = o.transpose(0, 1)
    return out


@pytest.fixture
def dense_attention() -> Callable[[PagedBatch], torch.Tensor]:
    return dense_causal_attention
