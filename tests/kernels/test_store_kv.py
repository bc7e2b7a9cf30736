"""`store_kv` against its reference (interpreted on CPU, compiled on CUDA)."""

import importlib.util

import pytest
import torch

from pipo_agent.backends.kernels import store_kv, store_kv_reference

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="triton is not installed (pip install -e '.[dev]')"
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("num_kv_heads", [2, 3], ids=["2-heads", "3-heads"])
def test_matches_reference(device, dtype, num_kv_heads):
    # key/value are strided views into a fused qkv projection; slot -1 marks a padded row.
    num_slots, head_dim = 24, 16
    qkv = torch.randn(5, 4 + 2 * num_kv_heads, head_dim, device=device).to(dtype)
    key, value = qkv[:, 4 : 4 + num_kv_heads], qkv[:, 4 + num_kv_heads :]
    slot_mapping = torch.tensor([17, -1, 3, 8, 23], device=device)
    caches = [torch.randn(num_slots, num_kv_heads, head_dim, device=device).to(dtype) for _ in range(2)]
    expected = [c.clone() for c in caches]
    store_kv(key, value, *caches, slot_mapping)
    store_kv_reference(key, value, *expected, slot_mapping)
    assert torch.equal(caches[0], expected[0]) and torch.equal(caches[1], expected[1])


def test_fills_the_cache_the_attention_reads(make_batch, device):
    batch = make_batch(
        [6, 11],
        [6, 3],
        num_q_heads=2,
        num_kv_heads=2,
        head_dim=16,
        block_size=4,
        dtype=torch.float32,
        device=device,
    )
    key = torch.cat([k[k.shape[0] - n :] for k, n in zip(batch.k_dense, [6, 3], strict=True)])
    value = torch.cat([v[v.shape[0] - n :] for v, n in zip(batch.v_dense, [6, 3], strict=True)])
    k_cache, v_cache = torch.zeros_like(batch.k_cache), torch.zeros_like(batch.v_cache)
    store_kv(key, value, k_cache, v_cache, batch.slot_mapping)
    assert torch.equal(k_cache[batch.slot_mapping], key) and torch.equal(v_cache[batch.slot_mapping], value)


def test_empty_batch_is_a_no_op(device):
    cache = torch.zeros(8, 2, 16, device=device)
    empty = torch.zeros(0, 2, 16, device=device)
    store_kv(empty, empty, cache, cache.clone(), torch.zeros(0, dtype=torch.long, device=device))
    assert not cache.any()
