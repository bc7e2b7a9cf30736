"""Paged extend (prefill) attention: new queries of varlen sequences over their paged KV, causally.

Sequence b's n_b queries (rows `cu_seqlens_q[b]:cu_seqlens_q[b+1]` of q) sit at positions
`context_lens[b] - n_b .. context_lens[b] - 1`; the query at position p sees positions 0..p. The earlier
positions may come from a prefix-cache hit or an earlier chunk; the new K/V are already in the cache, so every
key is read through the block table. Each program takes BLOCK_M queries of one q head and runs an online softmax
over BLOCK_N-position key tiles, stopping at its last query's position.
"""

from __future__ import annotations

import torch

from pipo_agent.backends.kernels import _checks
from pipo_agent.backends.kernels._triton import interpreter_upcast, lazy_jit, require_triton, tl, triton
from pipo_agent.backends.kernels.errors import KernelInputError

__all__ = ["paged_extend_attention", "paged_extend_attention_reference"]

LOG2E = 1.4426950408889634


@lazy_jit
def _extend_kernel(
    q_ptr,
    k_cache_ptr,
    v_cache_ptr,
    out_ptr,
    block_tables_ptr,
    cu_seqlens_q_ptr,
    context_lens_ptr,
    qk_scale,
    stride_qt,
    stride_qh,
    stride_bt,
    NUM_Q_HEADS: tl.constexpr,
    NUM_KV_HEADS: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    UPCAST: tl.constexpr,
):
    # Program (query tile, b, q head h).
    tile = tl.program_id(0)
    b = tl.program_id(1)
    h = tl.program_id(2)
    q_start = tl.load(cu_seqlens_q_ptr + b)
    num_new = tl.load(cu_seqlens_q_ptr + b + 1) - q_start
    if tile * BLOCK_M >= num_new:
        return
    context_len = tl.load(context_lens_ptr + b)
    prefix_len = context_len - num_new
    kv_head = h // (NUM_Q_HEADS // NUM_KV_HEADS)

    offs_m = tile * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    mask_m = offs_m < num_new
    rows = (q_start + offs_m).to(tl.int64)
    q = tl.load(
        q_ptr + rows[:, None] * stride_qt + h * stride_qh + offs_d[None, :], mask=mask_m[:, None], other=0.0
    )
    q_pos = prefix_len + offs_m  # [BLOCK_M]

    if UPCAST:  # see interpreter_upcast
        q = q.to(tl.float32)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    row_stride = NUM_KV_HEADS * HEAD_DIM  # contiguous [num_slots, NUM_KV_HEADS, HEAD_DIM]
    end = tl.minimum(context_len, prefix_len + (tile + 1) * BLOCK_M)  # past the tile's last query: all masked
    for start_n in range(0, end, BLOCK_N):
        pos = start_n + offs_n
        mask_n = pos < end
        block_ids = tl.load(block_tables_ptr + b * stride_bt + pos // BLOCK_SIZE, mask=mask_n, other=0)
        slots = block_ids.to(tl.int64) * BLOCK_SIZE + pos % BLOCK_SIZE
        kv_offs = slots[:, None] * row_stride + kv_head * HEAD_DIM + offs_d[None, :]
        k = tl.load(k_cache_ptr + kv_offs, mask=mask_n[:, None], other=0.0)  # [BLOCK_N, HEAD_DIM]
        v = tl.load(v_cache_ptr + kv_offs, mask=mask_n[:, None], other=0.0)
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)

        # Scores in log2 units: qk_scale = scale * log2(e), so exp2 stands in for exp.
        s = tl.dot(q, tl.trans(k), input_precision="ieee") * qk_scale  # [BLOCK_M, BLOCK_N]
        visible = mask_n[None, :] & (pos[None, :] <= q_pos[:, None])
        s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # A row with nothing visible yet keeps m = -inf; a 0 reference avoids exp2(-inf - -inf) = NaN.
        m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_ref)
        p = tl.exp2(s - m_ref[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
        m_i = m_new

    out = (
        acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    )  # a row that sees nothing (misuse: n_b > context) gives 0
    out_offs = rows[:, None] * (NUM_Q_HEADS * HEAD_DIM) + h * HEAD_DIM + offs_d[None, :]
    tl.store(out_ptr + out_offs, out.to(out_ptr.dtype.element_ty), mask=mask_m[:, None])


def _check_inputs(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    context_lens: torch.Tensor,
    block_size: int,
    scale: float,
    max_seqlen_q: int,
) -> None:
    _checks.check_kv_cache(k_cache, v_cache, block_size)
    _checks.check_float("q", q, 3)
    _checks.check_same_dtype(q=q, k_cache=k_cache)
    _checks.check_last_dim_contiguous("q", q)
    num_q_heads, head_dim = q.shape[1:]
    if head_dim != k_cache.shape[2]:
        raise KernelInputError(f"q has head_dim {head_dim}, k_cache has {k_cache.shape[2]}")
    _checks.check_gqa(num_q_heads, k_cache.shape[1])
    _checks.check_index("block_tables", block_tables, torch.int32, 2)
    batch = block_tables.shape[0]
    _checks.check_index("cu_seqlens_q", cu_seqlens_q, torch.int32, 1)
    _checks.check_shape("cu_seqlens_q", cu_seqlens_q, (batch + 1,))
    _checks.check_index("context_lens", context_lens, torch.int32, 1)
    _checks.check_shape("context_lens", context_lens, (batch,))
    _checks.check_scale(scale)
    if isinstance(max_seqlen_q, bool) or not isinstance(max_seqlen_q, int) or max_seqlen_q < 0:
        raise KernelInputError(f"max_seqlen_q must be a non-negative int, got {max_seqlen_q!r}")
    _checks.check_device(
        q=q,
        k_cache=k_cache,
        v_cache=v_cache,
        block_tables=block_tables,
        cu_seqlens_q=cu_seqlens_q,
        context_lens=context_lens,
    )


def paged_extend_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    context_lens: torch.Tensor,
    block_size: int,
    scale: float,
    max_seqlen_q: int,
) -> torch.Tensor:
    """Causal attention of the new queries `q` `[N, Hq, D]` over each sequence's paged KV; returns `[N, Hq, D]`.

    `block_tables` `[B, max_blocks]`, `cu_seqlens_q` `[B + 1]`, `context_lens` `[B]` (all int32), where
    `context_lens[b]` counts the new positions too. `max_seqlen_q` must be >= every n_b: it sizes the launch
    grid, and rows of a longer sequence would be left unwritten.
    """
    require_triton()
    _check_inputs(
        q, k_cache, v_cache, block_tables, cu_seqlens_q, context_lens, block_size, scale, max_seqlen_q
    )
    num_tokens, num_q_heads, head_dim = q.shape
    batch = block_tables.shape[0]
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    if num_tokens == 0 or batch == 0 or max_seqlen_q == 0:
        return out
    # 64x64 tiles keep q, k, v and the fp32 accumulator in registers/shared memory up to D=128 (~96 KB at D=128
    # in fp16 with two stages); D=256 halves the key tile.
    block_m = 64 if head_dim <= 128 else 32
    block_n = 64 if head_dim <= 64 else 32
    _extend_kernel[(triton.cdiv(max_seqlen_q, block_m), batch, num_q_heads)](
        q,
        k_cache,
        v_cache,
        out,
        block_tables,
        cu_seqlens_q,
        context_lens,
        scale * LOG2E,
        q.stride(0),
        q.stride(1),
        block_tables.stride(0),
        NUM_Q_HEADS=num_q_heads,
        NUM_KV_HEADS=k_cache.shape[1],
        HEAD_DIM=head_dim,
        BLOCK_SIZE=block_size,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        UPCAST=interpreter_upcast(q.dtype),
        num_warps=4 if head_dim <= 64 else 8,
        num_stages=2,
    )
    return out


def paged_extend_attention_reference(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    context_lens: torch.Tensor,
    block_size: int,
    scale: float,
    max_seqlen_q: int,
) -> torch.Tensor:
    """Plain PyTorch `paged_extend_attention`, one sequence at a time (reads the lengths on the host)."""
    num_q_heads = q.shape[1]
    group = num_q_heads // k_cache.shape[1]
    out = torch.zeros_like(q)
    bounds = cu_seqlens_q.tolist()
    for b, context_len in enumerate(context_lens.tolist()):
        start, stop = bounds[b], bounds[b + 1]
        num_new = stop - start
        if num_new == 0:
            continue
        pos = torch.arange(context_len, device=q.device)  # [L]
        slots = block_tables[b].long()[pos // block_size] * block_size + pos % block_size  # [L]
        k = k_cache[slots].float().repeat_interleave(group, dim=1)  # [L, Hq, D]
        v = v_cache[slots].float().repeat_interleave(group, dim=1)
        q_pos = torch.arange(context_len - num_new, context_len, device=q.device)  # [n_b]
        scores = torch.einsum("nhd,lhd->hnl", q[start:stop].float(), k) * scale  # [Hq, n_b, L]
        scores = scores.masked_fill(pos[None, None, :] > q_pos[None, :, None], float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        out[start:stop] = torch.einsum("hnl,lhd->nhd", probs, v).to(q.dtype)
    return out
