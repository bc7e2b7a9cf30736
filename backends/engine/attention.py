"""Paged attention over the pair-slot KV pool: per-step metadata and the two backends that use it.

Layout (shared with `pipo_agent.backends.kernels`): each layer's `k_cache`/`v_cache` is
`[num_slots, num_kv_heads, head_dim]`; position `p` of sequence `b` lives in slot
`block_tables[b, p // block_size] * block_size + p % block_size`. Queries are flattened varlen: sequence `b` owns
rows `cu_seqlens_q[b]:cu_seqlens_q[b+1]`, which sit at its last positions (`context_lens[b]` counts the new ones),
and attend causally to every cached position up to their own.

- `TorchAttention` (CPU, and the reference on any device): gathers each step's K/V once into a padded batch and
  calls PyTorch SDPA. A lone sequence whose blocks are physically consecutive (the common case when one
  request runs) reads a view of the pool instead of a copy. GQA heads are repeated: CPU SDPA with `enable_gqa`
  costs ~2 ms a call at this size against ~0.1 ms for MHA.
- `TritonAttention` (CUDA): the kernels of `pipo_agent.backends.kernels`.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import torch
import torch.nn.functional as F

from pipo_agent.backends.engine.errors import EngineConfigError
from pipo_agent.backends.engine.scheduler import ScheduledBatch

KVPair = tuple[torch.Tensor, torch.Tensor]  # (k_cache, v_cache), each [num_slots, Hkv, D]


class AttentionBackendName(StrEnum):
    TORCH = "torch"
    TRITON = "triton"


@dataclass(frozen=True)
class AttentionMetadata:
    """One step's (or one sub-batch's) attention inputs, built once and shared by every layer."""

    slot_mapping: torch.Tensor  # [N] int64: the KV slot each new row writes
    block_tables: torch.Tensor  # [B, max_blocks] int32
    cu_seqlens_q: torch.Tensor  # [B+1] int32
    context_lens: torch.Tensor  # [B] int32
    block_size: int
    max_seqlen_q: int
    num_new: tuple[int, ...]
    contexts: tuple[int, ...]
    # Torch path: physical slot of every (sequence, position), padded with slot 0, and the causal mask.
    kv_index: torch.Tensor | None  # [B, max_ctx] int64
    q_index: torch.Tensor | None  # [B, max_q] int64 rows of q (padding rows point at row 0)
    q_valid: torch.Tensor | None  # [B, max_q] bool
    mask: torch.Tensor | None  # [B, 1, max_q, max_ctx] bool, True = attend
    contiguous_start: int | None  # lone sequence in consecutive blocks: its first slot

    @property
    def num_seqs(self) -> int:
        return len(self.contexts)

    @property
    def is_decode(self) -> bool:
        return self.max_seqlen_q == 1


def build_metadata(
    slot_mapping: list[int],
    block_tables: list[tuple[int, ...]],
    num_new: list[int],
    contexts: list[int],
    block_size: int,
    device: torch.device,
    *,
    torch_path: bool,
) -> AttentionMetadata:
    """Metadata for sequences with `num_new[b]` new rows each and `contexts[b]` cached positions after them."""
    batch = len(contexts)
    max_blocks = max(len(t) for t in block_tables)
    table = torch.zeros(batch, max_blocks, dtype=torch.int32)
    for b, t in enumerate(block_tables):
        table[b, : len(t)] = torch.tensor(t, dtype=torch.int32)
    cu = [0]
    for n in num_new:
        cu.append(cu[-1] + n)
    kv_index = q_index = q_valid = mask = None
    contiguous_start = None
    if torch_path:
        max_ctx, max_q = max(contexts), max(num_new)
        pos = torch.arange(max_ctx)
        slots = table[:, pos // block_size].long() * block_size + pos % block_size  # [B, max_ctx]
        kv_index = torch.where(pos[None] < torch.tensor(contexts)[:, None], slots, 0)
        qi = torch.arange(max_q)
        q_valid = qi[None] < torch.tensor(num_new)[:, None]  # [B, max_q]
        q_index = torch.where(q_valid, torch.tensor(cu[:-1])[:, None] + qi[None], 0)
        if batch > 1 or num_new[0] not in (1, contexts[0]):  # a lone decode row or whole prompt needs none
            q_pos = torch.tensor(contexts)[:, None] - torch.tensor(num_new)[:, None] + qi[None]  # [B, max_q]
            ctx = torch.tensor(contexts)[:, None, None]
            mask = (pos[None, None, :] <= q_pos[:, :, None]) & (pos[None, None, :] < ctx)
            mask = (mask | ~q_valid[:, :, None]).unsqueeze(1)  # padding rows attend anywhere: no NaN, dropped
        if batch == 1:
            blocks = block_tables[0][: -(-contexts[0] // block_size)]
            if all(b == blocks[0] + i for i, b in enumerate(blocks)):
                contiguous_start = blocks[0] * block_size
        kv_index, q_index, q_valid = (t.to(device) for t in (kv_index, q_index, q_valid))
        mask = mask.to(device) if mask is not None else None
    return AttentionMetadata(
        slot_mapping=torch.tensor(slot_mapping, dtype=torch.int64, device=device),
        block_tables=table.to(device),
        cu_seqlens_q=torch.tensor(cu, dtype=torch.int32, device=device),
        context_lens=torch.tensor(contexts, dtype=torch.int32, device=device),
        block_size=block_size,
        max_seqlen_q=max(num_new),
        num_new=tuple(num_new),
        contexts=tuple(contexts),
        kv_index=kv_index,
        q_index=q_index,
        q_valid=q_valid,
        mask=mask,
        contiguous_start=contiguous_start,
    )


def batch_metadata(
    batch: ScheduledBatch, block_size: int, device: torch.device, *, torch_path: bool
) -> AttentionMetadata:
    return build_metadata(
        list(batch.slot_mapping),
        [tuple(t) for t in batch.block_tables],
        list(batch.num_new_pairs),
        list(batch.context_lens),
        block_size,
        device,
        torch_path=torch_path,
    )


class AttentionBackend(Protocol):
    name: AttentionBackendName
    needs_torch_metadata: bool

    def store(self, k: torch.Tensor, v: torch.Tensor, cache: KVPair, meta: AttentionMetadata) -> None: ...

    def attend(
        self, q: torch.Tensor, cache: KVPair, meta: AttentionMetadata, scale: float
    ) -> torch.Tensor: ...


def _repeat_kv(x: torch.Tensor, groups: int, dim: int) -> torch.Tensor:
    return x if groups == 1 else x.repeat_interleave(groups, dim=dim)


class TorchAttention:
    name = AttentionBackendName.TORCH
    needs_torch_metadata = True

    def store(self, k: torch.Tensor, v: torch.Tensor, cache: KVPair, meta: AttentionMetadata) -> None:
        k_cache, v_cache = cache
        k_cache.index_copy_(0, meta.slot_mapping, k.to(k_cache.dtype))
        v_cache.index_copy_(0, meta.slot_mapping, v.to(v_cache.dtype))

    def attend(self, q: torch.Tensor, cache: KVPair, meta: AttentionMetadata, scale: float) -> torch.Tensor:
        k_cache, v_cache = cache
        groups = q.shape[1] // k_cache.shape[1]
        if meta.num_seqs == 1:
            return self._attend_one(q, k_cache, v_cache, meta, scale, groups)
        assert meta.kv_index is not None and meta.q_index is not None and meta.mask is not None
        k = _repeat_kv(k_cache[meta.kv_index].transpose(1, 2), groups, 1)  # [B, Hq, max_ctx, D]
        v = _repeat_kv(v_cache[meta.kv_index].transpose(1, 2), groups, 1)
        qp = q[meta.q_index].transpose(1, 2)  # [B, max_q, Hq, D] -> [B, Hq, max_q, D]
        out = F.scaled_dot_product_attention(
            qp, k.to(q.dtype), v.to(q.dtype), attn_mask=meta.mask, scale=scale
        )
        return out.transpose(1, 2)[meta.q_valid]  # [B, max_q, Hq, D] -> [N, Hq, D]

    @staticmethod
    def _attend_one(
        q: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        meta: AttentionMetadata,
        scale: float,
        groups: int,
    ) -> torch.Tensor:
        ctx, n = meta.contexts[0], meta.num_new[0]
        if meta.contiguous_start is not None:
            start = meta.contiguous_start
            k, v = k_cache[start : start + ctx], v_cache[start : start + ctx]  # views, no copy
        else:
            assert meta.kv_index is not None
            k, v = k_cache[meta.kv_index[0]], v_cache[meta.kv_index[0]]
        k = _repeat_kv(k.transpose(0, 1), groups, 0)[None]  # [ctx, Hkv, D] -> [1, Hq, ctx, D]
        v = _repeat_kv(v.transpose(0, 1), groups, 0)[None]
        qt = q.transpose(0, 1)[None]  # [n, Hq, D] -> [1, Hq, n, D]
        if n == 1:
            out = F.scaled_dot_product_attention(qt, k.to(q.dtype), v.to(q.dtype), scale=scale)
        elif n == ctx:
            out = F.scaled_dot_product_attention(
                qt, k.to(q.dtype), v.to(q.dtype), is_causal=True, scale=scale
            )
        else:
            assert meta.mask is not None
            out = F.scaled_dot_product_attention(
                qt, k.to(q.dtype), v.to(q.dtype), attn_mask=meta.mask[0, :, :n, :ctx], scale=scale
            )
        return out[0].transpose(0, 1)  # [Hq, n, D] -> [n, Hq, D]


class TritonAttention:
    name = AttentionBackendName.TRITON
    needs_torch_metadata = False

    def __init__(self) -> None:
        from pipo_agent.backends import kernels

        self._kernels = kernels

    def store(self, k: torch.Tensor, v: torch.Tensor, cache: KVPair, meta: AttentionMetadata) -> None:
        k_cache, v_cache = cache
        self._kernels.store_kv(
            k.to(k_cache.dtype).contiguous(),
            v.to(v_cache.dtype).contiguous(),
            k_cache,
            v_cache,
            meta.slot_mapping,
        )

    def attend(self, q: torch.Tensor, cache: KVPair, meta: AttentionMetadata, scale: float) -> torch.Tensor:
        k_cache, v_cache = cache
        q = q.to(k_cache.dtype).contiguous()
        if meta.is_decode:
            return self._kernels.paged_decode_attention(
                q, k_cache, v_cache, meta.block_tables, meta.context_lens, meta.block_size, scale
            )
        return self._kernels.paged_extend_attention(
            q,
            k_cache,
            v_cache,
            meta.block_tables,
            meta.cu_seqlens_q,
            meta.context_lens,
            meta.block_size,
            scale,
            meta.max_seqlen_q,
        )


def make_attention_backend(name: str | None, device: torch.device) -> AttentionBackend:
    """`None` picks Triton on CUDA and torch elsewhere; an unknown name lists the valid ones."""
    if name is None:
        name = AttentionBackendName.TRITON if device.type == "cuda" else AttentionBackendName.TORCH
    try:
        choice = AttentionBackendName(name)
    except ValueError:
        valid = ", ".join(b.value for b in AttentionBackendName)
        raise EngineConfigError(f"unknown attention backend {name!r}; valid: {valid}") from None
    if choice is AttentionBackendName.TORCH:
        return TorchAttention()
    if device.type != "cuda":
        raise EngineConfigError(
            f"the triton attention backend runs on CUDA devices; this engine is on {device.type} (use 'torch')"
        )
    return TritonAttention()
