"""Paged decode attention: one query per sequence attends to all `context_lens[b]` positions of its cache.

Two launches (split-K, "flash-decoding"): the first splits each sequence's context into `num_kv_splits` ranges
and runs an online softmax over BLOCK_N-position tiles of one range, for all q heads of one kv head at once (GQA
heads share the K/V loads); the second merges the partial results by their log-sum-exp. A decode step has one
query row per head, so without splits a batch of 1 with 8 kv heads would occupy 8 of an H100's 132 SMs.
"""

from __future__ import annotations

import torch

from pipo_agent.backends.kernels import _checks
from pipo_agent.backends.kernels._triton import interpreter_upcast, lazy_jit, require_triton, tl, triton
from pipo_agent.backends.kernels.errors import KernelInputError

__all__ = ["paged_decode_attention", "paged_decode_attention_reference"]

LOG2E = 1.4426950408889634
MIN_SPLIT_LEN = 256  # positions; shorter ranges cost more in the merge than they gain in parallelism
MAX_SPLITS = 32


@lazy_jit
def _decode_kernel(
    q_ptr,
    k_cache_ptr,
    v_cache_ptr,
    block_tables_ptr,
    context_lens_ptr,
    mid_o_ptr,
    mid_lse_ptr,
    qk_scale,
    stride_qb,
    stride_qh,
    stride_bt,
    num_splits,
    NUM_KV_HEADS: tl.constexpr,
    GROUP: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    UPCAST: tl.constexpr,
):
    # Program (b, kv head g, split s): q heads g*GROUP .. g*GROUP+GROUP-1 over the split's range of positions.
    b = tl.program_id(0)
    g = tl.program_id(1)
    split = tl.program_id(2)
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, HEAD_DIM)
    offs_n = tl.arange(0, BLOCK_N)
    mask_h = offs_h < GROUP
    heads = g * GROUP + offs_h

    q_ptrs = q_ptr + b.to(tl.int64) * stride_qb + heads[:, None] * stride_qh + offs_d[None, :]
    q = tl.load(q_ptrs, mask=mask_h[:, None], other=0.0)  # [BLOCK_H, HEAD_DIM]

    context_len = tl.load(context_lens_ptr + b)
    split_len = tl.cdiv(tl.cdiv(context_len, num_splits), BLOCK_N) * BLOCK_N
    start = split * split_len
    end = tl.minimum(start + split_len, context_len)

    if UPCAST:  # see interpreter_upcast
        q = q.to(tl.float32)

    m_i = tl.full([BLOCK_H], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
    acc = tl.zeros([BLOCK_H, HEAD_DIM], dtype=tl.float32)
    row_stride = NUM_KV_HEADS * HEAD_DIM  # contiguous [num_slots, NUM_KV_HEADS, HEAD_DIM]
    for start_n in range(start, end, BLOCK_N):
        pos = start_n + offs_n
        mask_n = pos < end
        block_ids = tl.load(block_tables_ptr + b * stride_bt + pos // BLOCK_SIZE, mask=mask_n, other=0)
        slots = block_ids.to(tl.int64) * BLOCK_SIZE + pos % BLOCK_SIZE
        kv_offs = slots[:, None] * row_stride + g * HEAD_DIM + offs_d[None, :]
        k = tl.load(k_cache_ptr + kv_offs, mask=mask_n[:, None], other=0.0)  # [BLOCK_N, HEAD_DIM]
        v = tl.load(v_cache_ptr + kv_offs, mask=mask_n[:, None], other=0.0)
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)

        # Scores in log2 units: qk_scale = scale * log2(e), so exp2 stands in for exp.
        s = tl.dot(q, tl.trans(k), input_precision="ieee") * qk_scale  # [BLOCK_H, BLOCK_N]
        s = tl.where(mask_n[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
        m_i = m_new

    # An empty range (a short context split many ways) leaves lse = -inf, so the merge gives it weight 0.
    has_rows = l_i > 0
    out = acc / tl.where(has_rows, l_i, 1.0)[:, None]
    lse = tl.where(has_rows, m_i + tl.log2(tl.where(has_rows, l_i, 1.0)), float("-inf"))
    mid_rows = (b * NUM_KV_HEADS * GROUP + heads).to(tl.int64) * num_splits + split  # into [B, Hq, S]
    tl.store(mid_o_ptr + mid_rows[:, None] * HEAD_DIM + offs_d[None, :], out, mask=mask_h[:, None])
    tl.store(mid_lse_ptr + mid_rows, lse, mask=mask_h)


@lazy_jit
def _merge_kernel(
    mid_o_ptr,
    mid_lse_ptr,
    out_ptr,
    num_splits,
    HEAD_DIM: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    # Program (b, h): merge the num_splits partial outputs of one row, weighting each by exp2(lse).
    row = tl.program_id(0).to(tl.int64) * tl.num_programs(1) + tl.program_id(1)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, HEAD_DIM)
    mask_s = offs_s < num_splits
    lse = tl.load(mid_lse_ptr + row * num_splits + offs_s, mask=mask_s, other=float("-inf"))
    m = tl.max(lse, 0)
    m = tl.where(m == float("-inf"), 0.0, m)  # no positions at all: every weight is 0, output 0
    w = tl.exp2(lse - m)  # [BLOCK_S]
    o = tl.load(
        mid_o_ptr + (row * num_splits + offs_s)[:, None] * HEAD_DIM + offs_d[None, :],
        mask=mask_s[:, None],
        other=0.0,
    )
    total = tl.sum(w, 0)
    out = tl.sum(w[:, None] * o, 0) / tl.where(total > 0, total, 1.0)
    tl.store(out_ptr + row * HEAD_DIM + offs_d, out.to(out_ptr.dtype.element_ty))


def _check_inputs(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    block_size: int,
    scale: float,
) -> None:
    _checks.check_kv_cache(k_cache, v_cache, block_size)
    _checks.check_float("q", q, 3)
    _checks.check_same_dtype(q=q, k_cache=k_cache)
    _checks.check_last_dim_contiguous("q", q)
    batch, num_q_heads, head_dim = q.shape
    if head_dim != k_cache.shape[2]:
        raise KernelInputError(f"q has head_dim {head_dim}, k_cache has {k_cache.shape[2]}")
    _checks.check_gqa(num_q_heads, k_cache.shape[1])
    _checks.check_index("block_tables", block_tables, torch.int32, 2)
    if block_tables.shape[0] != batch:
        raise KernelInputError(f"block_tables has {block_tables.shape[0]} rows for a batch of {batch}")
    _checks.check_index("context_lens", context_lens, torch.int32, 1)
    _checks.check_shape("context_lens", context_lens, (batch,))
    _checks.check_scale(scale)
    _checks.check_device(
        q=q, k_cache=k_cache, v_cache=v_cache, block_tables=block_tables, context_lens=context_lens
    )


def _default_num_splits(batch: int, num_kv_heads: int, max_context: int, device: torch.device) -> int:
    """Enough (batch, kv head, split) programs for two waves over the SMs, each split >= MIN_SPLIT_LEN long.

    `max_context` is the block table's capacity: the real lengths live on the GPU, and reading them would sync.
    """
    num_sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1
    wanted = triton.cdiv(2 * num_sms, batch * num_kv_heads)
    return max(1, min(wanted, triton.cdiv(max_context, MIN_SPLIT_LEN), MAX_SPLITS))


def paged_decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    block_size: int,
    scale: float,
    *,
    num_kv_splits: int | None = None,
) -> torch.Tensor:
    """Attention of `q` `[B, Hq, D]` (one query per sequence) over each sequence's paged KV; returns `[B, Hq, D]`.

    `block_tables` `[B, max_blocks]` int32, `context_lens` `[B]` int32 (>= 1 positions each; 0 gives zeros).
    `num_kv_splits` overrides the split-K factor (None: picked from the SM count and the block table's width).
    """
    require_triton()
    _check_inputs(q, k_cache, v_cache, block_tables, context_lens, block_size, scale)
    batch, num_q_heads, head_dim = q.shape
    num_kv_heads = k_cache.shape[1]
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    if batch == 0:
        return out
    if num_kv_splits is None:
        max_context = block_tables.shape[1] * block_size
        num_kv_splits = _default_num_splits(batch, num_kv_heads, max_context, q.device)
    elif num_kv_splits < 1:
        raise KernelInputError(f"num_kv_splits must be >= 1, got {num_kv_splits}")

    group = num_q_heads // num_kv_heads
    mid_o = torch.empty(batch, num_q_heads, num_kv_splits, head_dim, dtype=torch.float32, device=q.device)
    mid_lse = torch.empty(batch, num_q_heads, num_kv_splits, dtype=torch.float32, device=q.device)
    block_n = 64 if head_dim <= 128 else 32
    _decode_kernel[(batch, num_kv_heads, num_kv_splits)](
        q,
        k_cache,
        v_cache,
        block_tables,
        context_lens,
        mid_o,
        mid_lse,
        scale * LOG2E,
        q.stride(0),
        q.stride(1),
        block_tables.stride(0),
        num_kv_splits,
        NUM_KV_HEADS=num_kv_heads,
        GROUP=group,
        HEAD_DIM=head_dim,
        BLOCK_SIZE=block_size,
        BLOCK_H=max(16, triton.next_power_of_2(group)),  # tl.dot needs M >= 16; padded heads are masked
        BLOCK_N=block_n,
        UPCAST=interpreter_upcast(q.dtype),
        num_warps=4,
        num_stages=2,
    )
    _merge_kernel[(batch, num_q_heads)](
        mid_o,
        mid_lse,
        out,
        num_kv_splits,
        HEAD_DIM=head_dim,
        BLOCK_S=triton.next_power_of_2(num_kv_splits),
        num_warps=4 if head_dim >= 128 else 1,
    )
    return out


def paged_decode_attention_reference(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    block_size: int,
    scale: float,
) -> torch.Tensor:
    """Plain PyTorch `paged_decode_attention`: gather every block-table position, mask those past the context."""
    group = q.shape[1] // k_cache.shape[1]
    pos = torch.arange(block_tables.shape[1] * block_size, device=q.device)  # [L]
    valid = pos[None, :] < context_lens[:, None].long()  # [B, L]
    block_ids = block_tables.long()[:, pos // block_size]  # [B, L]
    slots = torch.where(valid, block_ids * block_size + pos % block_size, 0)  # [B, L]
    k = k_cache[slots].float().repeat_interleave(group, dim=2)  # [B, L, Hq, D]
    v = v_cache[slots].float().repeat_interleave(group, dim=2)
    v = torch.where(
        valid[:, :, None, None], v, 0.0
    )  # the cache past a context may hold anything, NaN included
    scores = torch.einsum("bhd,blhd->bhl", q.float(), k) * scale  # [B, Hq, L]
    scores = scores.masked_fill(~valid[:, None, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    probs = torch.where(valid.any(dim=1)[:, None, None], probs, 0.0)  # an empty context gives 0, not NaN
    return torch.einsum("bhl,blhd->bhd", probs, v).to(q.dtype)
