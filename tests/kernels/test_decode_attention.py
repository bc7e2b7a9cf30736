"""`paged_decode_attention` against its reference (interpreted on CPU, compiled on CUDA)."""

import importlib.util

import pytest
import torch

from pipo_agent.backends.kernels import paged_decode_attention, paged_decode_attention_reference

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="triton is not installed (pip install -e '.[dev]')"
)

TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}


def _both(batch, q=None, **kwargs):
    args = (
        batch.q if q is None else q,
        batch.k_cache,
        batch.v_cache,
        batch.block_tables,
        batch.context_lens,
        batch.block_size,
        batch.scale,
    )
    return paged_decode_attention(*args, **kwargs), paged_decode_attention_reference(*args)


@pytest.mark.parametrize("num_kv_splits", [None, 3], ids=["auto-splits", "3-splits"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize(("num_q_heads", "num_kv_heads"), [(4, 2), (2, 2)], ids=["gqa", "mha"])
def test_matches_reference(make_batch, device, num_q_heads, num_kv_heads, dtype, num_kv_splits):
    # Context lengths around and off the block size (4); with 3 splits, 150 positions fall into three 64-position
    # ranges merged by the second pass, while the short contexts leave splits empty.
    batch = make_batch(
        [1, 7, 20, 150],
        [1, 1, 1, 1],
        num_q_heads=num_q_heads,
        num_kv_heads=num_kv_heads,
        head_dim=16,
        block_size=4,
        dtype=dtype,
        device=device,
    )
    out, ref = _both(batch, num_kv_splits=num_kv_splits)
    assert out.shape == ref.shape and out.dtype == dtype
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(out, ref, atol=tol, rtol=tol)


def test_strided_query_long_context_and_empty_sequence(make_batch, device):
    # head_dim 32 as in the default model; q is a view into a fused projection; 150 positions span three
    # 64-position tiles in one split; a sequence with no positions yields zeros, like the reference.
    batch = make_batch(
        [150, 0, 5],
        [1, 0, 1],
        num_q_heads=4,
        num_kv_heads=1,
        head_dim=32,
        block_size=8,
        dtype=torch.float16,
        device=device,
    )
    fused = torch.randn(3, 4 + 2, 32, device=device, dtype=torch.float16)
    q = fused[:, :4]  # [B, Hq, D], row stride 6 * 32
    out, ref = _both(batch, q=q, num_kv_splits=1)
    torch.testing.assert_close(out, ref, atol=2e-3, rtol=2e-3)
    assert not out[1].any()
