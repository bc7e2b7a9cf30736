"""Write new keys and values into the paged KV pool: row i goes to slot `slot_mapping[i]`.

Negative slots are skipped, as in vLLM: padded rows (e.g. a batch padded up to a captured CUDA-graph size) carry
slot -1 and write nothing.
"""

from __future__ import annotations

import torch

from pipo_agent.backends.kernels import _checks
from pipo_agent.backends.kernels._triton import lazy_jit, require_triton, tl, triton

__all__ = ["store_kv", "store_kv_reference"]


@lazy_jit
def _store_kv_kernel(
    key_ptr,
    value_ptr,
    k_cache_ptr,
    v_cache_ptr,
    slot_mapping_ptr,
    stride_kt,
    stride_kh,
    stride_vt,
    stride_vh,
    NUM_KV_HEADS: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    # One program per token row, covering all its kv heads: [BLOCK_H, HEAD_DIM] elements.
    row = tl.program_id(0).to(tl.int64)
    slot = tl.load(slot_mapping_ptr + row)
    if slot >= 0:
        offs_h = tl.arange(0, BLOCK_H)
        offs_d = tl.arange(0, HEAD_DIM)
        mask = (offs_h < NUM_KV_HEADS)[:, None]
        src_k = key_ptr + row * stride_kt + offs_h[:, None] * stride_kh + offs_d[None, :]
        src_v = value_ptr + row * stride_vt + offs_h[:, None] * stride_vh + offs_d[None, :]
        # The caches are contiguous [num_slots, NUM_KV_HEADS, HEAD_DIM].
        dst = slot * (NUM_KV_HEADS * HEAD_DIM) + offs_h[:, None] * HEAD_DIM + offs_d[None, :]
        tl.store(k_cache_ptr + dst, tl.load(src_k, mask=mask), mask=mask)
        tl.store(v_cache_ptr + dst, tl.load(src_v, mask=mask), mask=mask)


def _check_inputs(
    key: torch.Tensor,
    value: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    _checks.check_kv_cache(k_cache, v_cache)
    _checks.check_float("key", key, 3)
    num_tokens = key.shape[0]
    _checks.check_shape("key", key, (num_tokens, *k_cache.shape[1:]))
    _checks.check_shape("value", value, tuple(key.shape))
    _checks.check_same_dtype(key=key, value=value, k_cache=k_cache)
    _checks.check_last_dim_contiguous("key", key)
    _checks.check_last_dim_contiguous("value", value)
    _checks.check_index("slot_mapping", slot_mapping, torch.int64, 1)
    _checks.check_shape("slot_mapping", slot_mapping, (num_tokens,))


def store_kv(
    key: torch.Tensor,
    value: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """Write `key`, `value` `[N, Hkv, D]` into `k_cache`, `v_cache` `[num_slots, Hkv, D]` in place.

    `key`/`value` may be strided views (e.g. slices of a fused qkv projection) as long as head_dim is contiguous.
    `slot_mapping` `[N]` int64; a negative slot skips its row.
    """
    require_triton()
    _check_inputs(key, value, k_cache, v_cache, slot_mapping)
    _checks.check_device(key=key, value=value, k_cache=k_cache, v_cache=v_cache, slot_mapping=slot_mapping)
    num_tokens, num_kv_heads, head_dim = key.shape
    if num_tokens == 0:
        return
    _store_kv_kernel[(num_tokens,)](
        key,
        value,
        k_cache,
        v_cache,
        slot_mapping,
        key.stride(0),
        key.stride(1),
        value.stride(0),
        value.stride(1),
        NUM_KV_HEADS=num_kv_heads,
        HEAD_DIM=head_dim,
        BLOCK_H=triton.next_power_of_2(num_kv_heads),
    )


def store_kv_reference(
    key: torch.Tensor,
    value: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """Plain PyTorch `store_kv`."""
    keep = slot_mapping >= 0
    slots = slot_mapping[keep]
    k_cache[slots] = key[keep]
    v_cache[slots] = value[keep]
