"""The compiled kernels against their references on CUDA, at engine-like sizes (skipped without a GPU)."""

import importlib.util

import pytest
import torch

from pipo_agent.backends.kernels import (
    paged_decode_attention,
    paged_decode_attention_reference,
    paged_extend_attention,
    paged_extend_attention_reference,
    store_kv,
    store_kv_reference,
)

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed"),
]

TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 2e-2}
CONFIGS = [
    # (head_dim, dtype, num_q_heads, num_kv_heads)
    (32, torch.bfloat16, 8, 2),
    (32, torch.float16, 8, 8),
    (64, torch.float32, 8, 2),
    (128, torch.bfloat16, 8, 8),
    (128, torch.float16, 8, 2),
    (256, torch.bfloat16, 8, 2),
    (256, torch.float16, 8, 8),
]
IDS = [f"d{d}-{str(t).removeprefix('torch.')}-{hq}x{hkv}" for d, t, hq, hkv in CONFIGS]
CONTEXTS = [1, 15, 16, 17, 300, 1023, 2048, 2777]  # around block_size 16, and long enough for many splits


@pytest.mark.parametrize(("head_dim", "dtype", "num_q_heads", "num_kv_heads"), CONFIGS, ids=IDS)
def test_decode(make_batch, head_dim, dtype, num_q_heads, num_kv_heads):
    batch = make_batch(
        CONTEXTS,
        [1] * len(CONTEXTS),
        num_q_heads=num_q_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        block_size=16,
        dtype=dtype,
        device="cuda",
        spare_blocks=50,
    )
    args = (batch.q, batch.k_cache, batch.v_cache, batch.block_tables, batch.context_lens, 16, batch.scale)
    ref = paged_decode_attention_reference(*args)
    tol = TOLERANCE[dtype]
    for num_kv_splits in (None, 1, 7):
        out = paged_decode_attention(*args, num_kv_splits=num_kv_splits)
        torch.testing.assert_close(
            out, ref, atol=tol, rtol=tol, msg=lambda m, s=num_kv_splits: f"splits={s}: {m}"
        )


@pytest.mark.parametrize(("head_dim", "dtype", "num_q_heads", "num_kv_heads"), CONFIGS, ids=IDS)
def test_extend(make_batch, head_dim, dtype, num_q_heads, num_kv_heads):
    # Full prompts, chunks after cached prefixes (some not block-aligned), and single positions.
    contexts = [1, 200, 1000, 1500, 2777, 64, 130]
    new = [1, 200, 37, 1000, 513, 1, 129]
    batch = make_batch(
        contexts,
        new,
        num_q_heads=num_q_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        block_size=16,
        dtype=dtype,
        device="cuda",
        spare_blocks=50,
    )
    args = (
        batch.q,
        batch.k_cache,
        batch.v_cache,
        batch.block_tables,
        batch.cu_seqlens_q,
        batch.context_lens,
        16,
        batch.scale,
        batch.max_seqlen_q,
    )
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(
        paged_extend_attention(*args), paged_extend_attention_reference(*args), atol=tol, rtol=tol
    )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_store_kv(dtype):
    num_tokens, num_kv_heads, head_dim = 4096, 8, 128
    qkv = torch.randn(num_tokens, 8 + 2 * num_kv_heads, head_dim, device="cuda", dtype=dtype)
    key, value = qkv[:, 8 : 8 + num_kv_heads], qkv[:, 8 + num_kv_heads :]
    slot_mapping = torch.randperm(16384, device="cuda")[:num_tokens]
    slot_mapping[::97] = -1
    caches = [torch.randn(16384, num_kv_heads, head_dim, device="cuda", dtype=dtype) for _ in range(2)]
    expected = [c.clone() for c in caches]
    store_kv(key, value, *caches, slot_mapping)
    store_kv_reference(key, value, *expected, slot_mapping)
    assert torch.equal(caches[0], expected[0]) and torch.equal(caches[1], expected[1])
