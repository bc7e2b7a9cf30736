"""`paged_extend_attention` against its reference (interpreted on CPU, compiled on CUDA)."""

import importlib.util

import pytest
import torch

from pipo_agent.backends.kernels import paged_extend_attention, paged_extend_attention_reference

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="triton is not installed (pip install -e '.[dev]')"
)

TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}


def _both(batch, q=None):
    args = (
        batch.q if q is None else q,
        batch.k_cache,
        batch.v_cache,
        batch.block_tables,
        batch.cu_seqlens_q,
        batch.context_lens,
        batch.block_size,
        batch.scale,
        batch.max_seqlen_q,
    )
    return paged_extend_attention(*args), paged_extend_attention_reference(*args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize(("num_q_heads", "num_kv_heads"), [(4, 2), (2, 2)], ids=["gqa", "mha"])
def test_matches_reference(make_batch, device, num_q_heads, num_kv_heads, dtype):
    # A fresh prompt, a chunk after a 16-position cached prefix, one new position, and a sequence with none.
    batch = make_batch(
        [9, 21, 6, 4],
        [9, 5, 1, 0],
        num_q_heads=num_q_heads,
        num_kv_heads=num_kv_heads,
        head_dim=16,
        block_size=4,
        dtype=dtype,
        device=device,
    )
    out, ref = _both(batch)
    assert out.shape == ref.shape and out.dtype == dtype
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(out, ref, atol=tol, rtol=tol)


def test_chunk_longer_than_a_query_tile(make_batch, device):
    # 70 new positions after a 10-position prefix: two 64-row query tiles, each stopping at its own diagonal;
    # block_size 5 is not a power of two. q is a view into a fused projection.
    batch = make_batch(
        [80, 3],
        [70, 2],
        num_q_heads=2,
        num_kv_heads=2,
        head_dim=32,
        block_size=5,
        dtype=torch.float32,
        device=device,
    )
    fused = torch.randn(72, 2 + 4, 32, device=device)
    q = fused[:, 2:4]  # [N, Hq, D], row stride 6 * 32
    out, ref = _both(batch, q=q)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
