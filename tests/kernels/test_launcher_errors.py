"""The launchers reject bad arguments with `KernelInputError` before launching, and say when Triton is missing."""

import importlib.util
import subprocess
import sys

import pytest
import torch

from pipo_agent.backends.kernels import (
    KernelInputError,
    KernelUnavailableError,
    _triton,
    paged_decode_attention,
    paged_extend_attention,
    store_kv,
)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="triton is not installed (pip install -e '.[dev]')"
)


def _decode_args(device, **overrides):
    args = dict(
        q=torch.randn(2, 4, 16, device=device),
        k_cache=torch.randn(16, 2, 16, device=device),
        v_cache=torch.randn(16, 2, 16, device=device),
        block_tables=torch.zeros(2, 4, dtype=torch.int32, device=device),
        context_lens=torch.ones(2, dtype=torch.int32, device=device),
        block_size=4,
        scale=0.25,
    )
    return args | overrides


def _extend_args(device, **overrides):
    args = _decode_args(device, q=torch.randn(3, 4, 16, device=device))
    args["cu_seqlens_q"] = torch.tensor([0, 1, 3], dtype=torch.int32, device=device)
    args["max_seqlen_q"] = 2
    return args | overrides


def _store_args(device, **overrides):
    args = dict(
        key=torch.randn(3, 2, 16, device=device),
        value=torch.randn(3, 2, 16, device=device),
        k_cache=torch.zeros(16, 2, 16, device=device),
        v_cache=torch.zeros(16, 2, 16, device=device),
        slot_mapping=torch.arange(3, device=device),
    )
    return args | overrides


def _non_contiguous_cache(device):
    return torch.randn(2, 16, 16, device=device).transpose(0, 1)  # [16, 2, 16], strides (16, 256, 1)


# Each case: overrides built from (device, number of q rows), and the message expected.
ATTENTION_CASES = {
    "q-float64": (
        lambda d, n: {"q": torch.randn(n, 4, 16, dtype=torch.float64, device=d)},
        "q must be float16",
    ),
    "q-cache-dtypes": (lambda d, n: {"q": torch.randn(n, 4, 16, device=d).half()}, "dtypes must match"),
    "block-tables-int64": (
        lambda d, n: {"block_tables": torch.zeros(2, 4, dtype=torch.long, device=d)},
        "block_tables must be torch.int32",
    ),
    "v-cache-shape": (
        lambda d, n: {"v_cache": torch.randn(16, 1, 16, device=d)},
        r"v_cache must have shape \(16, 2, 16\)",
    ),
    "context-lens-length": (
        lambda d, n: {"context_lens": torch.ones(3, dtype=torch.int32, device=d)},
        r"context_lens must have shape \(2,\)",
    ),
    "non-contiguous-cache": (
        lambda d, n: {"k_cache": _non_contiguous_cache(d)},
        "k_cache must be contiguous",
    ),
    "head-dim-not-pow2": (lambda d, n: _head_dim_args(d, n, 24), "head_dim must be a power of 2"),
    "head-dim-too-small": (lambda d, n: _head_dim_args(d, n, 8), "head_dim must be a power of 2 in 16..256"),
    "q-head-dim": (lambda d, n: {"q": torch.randn(n, 4, 32, device=d)}, "q has head_dim 32, k_cache has 16"),
    "gqa-ratio": (
        lambda d, n: {"q": torch.randn(n, 3, 16, device=d)},
        r"num_q_heads \(3\) must be a positive multiple",
    ),
    "block-size": (lambda d, n: {"block_size": 5}, "not a multiple of block_size=5"),
    "scale": (lambda d, n: {"scale": float("nan")}, "scale must be a finite positive float"),
    "q-head-dim-strided": (
        lambda d, n: {"q": torch.randn(n, 4, 32, device=d)[..., ::2]},
        "q must be contiguous in head_dim",
    ),
}


def _head_dim_args(device, num_rows, head_dim):
    return {
        "q": torch.randn(num_rows, 4, head_dim, device=device),
        "k_cache": torch.randn(16, 2, head_dim, device=device),
        "v_cache": torch.randn(16, 2, head_dim, device=device),
    }


@pytest.mark.parametrize("case", ATTENTION_CASES)
def test_decode_rejects(device, case):
    overrides, match = ATTENTION_CASES[case]
    with pytest.raises(KernelInputError, match=match):
        paged_decode_attention(**_decode_args(device, **overrides(device, 2)))


@pytest.mark.parametrize("case", ATTENTION_CASES)
def test_extend_rejects(device, case):
    overrides, match = ATTENTION_CASES[case]
    with pytest.raises(KernelInputError, match=match):
        paged_extend_attention(**_extend_args(device, **overrides(device, 3)))


def test_extend_rejects_bad_cu_seqlens_and_max_seqlen(device):
    cu_seqlens = torch.tensor([0, 3], dtype=torch.int32, device=device)
    with pytest.raises(KernelInputError, match=r"cu_seqlens_q must have shape \(3,\)"):
        paged_extend_attention(**_extend_args(device, cu_seqlens_q=cu_seqlens))
    with pytest.raises(KernelInputError, match="max_seqlen_q must be a non-negative int"):
        paged_extend_attention(**_extend_args(device, max_seqlen_q=-1))


STORE_CASES = {
    "slot-mapping-int32": (
        lambda d: {"slot_mapping": torch.arange(3, dtype=torch.int32, device=d)},
        "slot_mapping must be torch.int64",
    ),
    "value-shape": (
        lambda d: {"value": torch.randn(2, 2, 16, device=d)},
        r"value must have shape \(3, 2, 16\)",
    ),
    "key-heads": (lambda d: {"key": torch.randn(3, 1, 16, device=d)}, r"key must have shape \(3, 2, 16\)"),
    "key-dtype": (lambda d: {"key": torch.randn(3, 2, 16, device=d).bfloat16()}, "dtypes must match"),
    "non-contiguous-cache": (lambda d: {"v_cache": _non_contiguous_cache(d)}, "v_cache must be contiguous"),
    "slot-mapping-length": (
        lambda d: {"slot_mapping": torch.arange(4, device=d)},
        r"slot_mapping must have shape",
    ),
}


@pytest.mark.parametrize("case", STORE_CASES)
def test_store_kv_rejects(device, case):
    overrides, match = STORE_CASES[case]
    with pytest.raises(KernelInputError, match=match):
        store_kv(**_store_args(device, **overrides(device)))


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    monkeypatch.setattr(_triton, "interpret_mode", lambda: False)
    expected = KernelInputError if torch.cuda.is_available() else KernelUnavailableError
    with pytest.raises(expected, match="CUDA"):
        paged_decode_attention(**_decode_args("cpu"))


def test_missing_triton_names_the_dev_extra(monkeypatch, device):
    monkeypatch.setattr(_triton, "triton", None)
    assert not _triton.triton_available()
    with pytest.raises(KernelUnavailableError, match=r"\[dev\]"):
        store_kv(**_store_args(device))


def test_package_imports_without_triton():
    # A fresh interpreter where `import triton` fails: the references still run.
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch\n"
        "from pipo_agent.backends import kernels as k\n"
        "assert not k.triton_available()\n"
        "c = torch.zeros(4, 1, 16)\n"
        "k.store_kv_reference(torch.ones(1, 1, 16), torch.ones(1, 1, 16), c, c.clone(), torch.tensor([2]))\n"
        "assert c[2].eq(1).all()\n"
        "try:\n"
        "    k.paged_decode_attention(torch.ones(1, 1, 16), c, c, torch.zeros(1, 1, dtype=torch.int32),"
        " torch.ones(1, dtype=torch.int32), 4, 1.0)\n"
        "except k.KernelUnavailableError as exc:\n"
        "    assert 'dev' in str(exc)\n"
        "else:\n"
        "    raise AssertionError('no KernelUnavailableError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
