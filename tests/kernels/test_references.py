"""The PyTorch references against dense causal attention on each sequence's unpaged K/V (no Triton needed)."""

import pytest
import torch

from pipo_agent.backends.kernels import (
    paged_decode_attention_reference,
    paged_extend_attention_reference,
    store_kv_reference,
)

HEADS = pytest.mark.parametrize(("num_q_heads", "num_kv_heads"), [(4, 2), (2, 2)], ids=["gqa", "mha"])


@HEADS
def test_decode_reference_matches_dense_attention(make_batch, dense_attention, num_q_heads, num_kv_heads):
    batch = make_batch(
        [1, 7, 20, 33],
        [1, 1, 1, 1],
        num_q_heads=num_q_heads,
        num_kv_heads=num_kv_heads,
        head_dim=16,
        block_size=4,
        dtype=torch.float32,
        device="cpu",
    )
    out = paged_decode_attention_reference(
        batch.q,
        batch.k_cache,
        batch.v_cache,
        batch.block_tables,
        batch.context_lens,
        batch.block_size,
        batch.scale,
    )
    torch.testing.assert_close(out.double(), dense_attention(batch), atol=1e-5, rtol=1e-5)


def test_decode_reference_gives_zeros_for_an_empty_context(make_batch):
    batch = make_batch(
        [0, 5],
        [0, 1],
        num_q_heads=2,
        num_kv_heads=1,
        head_dim=16,
        block_size=4,
        dtype=torch.float32,
        device="cpu",
    )
    q = torch.randn(2, 2, 16)
    out = paged_decode_attention_reference(
        q, batch.k_cache, batch.v_cache, batch.block_tables, batch.context_lens, batch.block_size, batch.scale
    )
    assert torch.equal(out[0], torch.zeros(2, 16))
    assert out[1].isfinite().all()


@HEADS
def test_extend_reference_matches_dense_attention(make_batch, dense_attention, num_q_heads, num_kv_heads):
    # A fresh prompt, a chunk after a cached prefix, a single new position, and a sequence with none.
    batch = make_batch(
        [9, 21, 6, 4],
        [9, 5, 1, 0],
        num_q_heads=num_q_heads,
        num_kv_heads=num_kv_heads,
        head_dim=16,
        block_size=4,
        dtype=torch.float32,
        device="cpu",
    )
    out = paged_extend_attention_reference(
        batch.q,
        batch.k_cache,
        batch.v_cache,
        batch.block_tables,
        batch.cu_seqlens_q,
        batch.context_lens,
        batch.block_size,
        batch.scale,
        batch.max_seqlen_q,
    )
    torch.testing.assert_close(out.double(), dense_attention(batch), atol=1e-5, rtol=1e-5)


def test_store_kv_reference_writes_each_row_to_its_slot_and_skips_negative_slots():
    k_cache, v_cache = torch.zeros(8, 2, 16), torch.zeros(8, 2, 16)
    key, value = torch.randn(3, 2, 16), torch.randn(3, 2, 16)
    store_kv_reference(key, value, k_cache, v_cache, torch.tensor([5, -1, 2]))
    assert torch.equal(k_cache[5], key[0]) and torch.equal(k_cache[2], key[2])
    assert torch.equal(v_cache[5], value[0]) and torch.equal(v_cache[2], value[2])
    untouched = [0, 1, 3, 4, 6, 7]
    assert not k_cache[untouched].any() and not v_cache[untouched].any()
