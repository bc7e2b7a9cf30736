"""A pure-torch `sgl_kernel` for CPU-only machines: the ops SGLang's CPU path calls for the models we serve.

The `sglang-kernel` wheel on PyPI carries only CUDA builds, so on a machine without a GPU `import sgl_kernel`
would either fail or load libraries that need libcuda. `pipo-agent serve --engine sglang` puts the folder
holding this package first on the server's `PYTHONPATH` when it runs on the CPU. It provides:

- the module functions SGLang imports from `sgl_kernel`: `assign_req_to_token_pool_cpu`,
  `copy_all_layer_kv_cache_cpu` (here), and, for the linear attention of Qwen3.5 (Gated DeltaNet),
  `sgl_kernel.mamba.causal_conv1d_fn_cpu`, `causal_conv1d_update_cpu` and `chunk_gated_delta_rule_cpu`;
- the `torch.ops.sgl_kernel` ops Qwen3.5's layers call on the CPU, registered with torch on import (`_library`):
  the output gate, the Gemma q/k norms, the GDN input split, gates, decode step and gated norm;
- one switch (`_sglang_gates`): SGLang takes its CPU gated norm only on CPUs with AMX, a Triton kernel elsewhere.

Any other module attribute is a callable that raises `NotImplementedError` naming the op, and other
`torch.ops.sgl_kernel` names do not exist: the CPU server never reaches them, and if a future SGLang does, the
error says which op is missing. No AMX op is provided: without `convert_weight_packed` SGLang never packs
weights nor takes its AMX paths (`fused_input_proj_cpu`, the AMX norms, rotary and activations). Other
submodules (`sgl_kernel.scalar_type`, ...) do not exist, and SGLang falls back where it imports them.
"""

import ctypes
from collections.abc import Callable
from typing import Any

import torch

from . import _library, _sglang_gates, mamba

__version__ = "0.0.0+pipo-agent-cpu"

IMPLEMENTED = (
    "assign_req_to_token_pool_cpu",
    "copy_all_layer_kv_cache_cpu",
    *(f"mamba.{name}" for name in mamba.__all__),
    *(f"torch.ops.sgl_kernel.{name}" for name in _library.SCHEMAS),
)


def assign_req_to_token_pool_cpu(
    req_pool_indices: torch.Tensor,
    req_to_token: torch.Tensor,
    start_offset: torch.Tensor,
    end_offset: torch.Tensor,
    out_cache_loc: torch.Tensor,
    pool_len: int,
) -> None:
    """`req_to_token[req_pool_indices[i], start_offset[i]:end_offset[i]]` <- the next slots of `out_cache_loc`.

    `out_cache_loc` holds the new slots of every request back to back, in batch order."""
    starts = start_offset.tolist()
    ends = end_offset.tolist()
    rows = req_pool_indices.tolist()
    offset = 0
    for row, start, end in zip(rows, starts, ends, strict=True):
        if not 0 <= start <= end <= pool_len:
            raise ValueError(f"token range [{start}, {end}) is outside a request row of {pool_len} entries")
        count = end - start
        req_to_token[row, start:end] = out_cache_loc[offset : offset + count].to(req_to_token.dtype)
        offset += count


def copy_all_layer_kv_cache_cpu(
    data_ptrs: torch.Tensor, strides: torch.Tensor, tgt_loc: torch.Tensor, src_loc: torch.Tensor
) -> None:
    """In every buffer `b` (base address `data_ptrs[b]`, `strides[b]` bytes per slot), slot `src_loc[i]` is
    copied to slot `tgt_loc[i]`. All sources are read before any target is written, so the two sets may overlap."""
    sources = src_loc.tolist()
    targets = tgt_loc.tolist()
    if len(sources) != len(targets):
        raise ValueError(f"{len(sources)} source slots but {len(targets)} target slots")
    for base, stride in zip(data_ptrs.tolist(), strides.tolist(), strict=True):
        saved = [ctypes.string_at(base + src * stride, stride) for src in sources]
        for tgt, row in zip(targets, saved, strict=True):
            ctypes.memmove(base + tgt * stride, row, stride)


def _missing(name: str) -> Callable[..., Any]:
    def op(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"sgl_kernel op {name!r} has no CPU implementation here (this stand-in provides only "
            f"{', '.join(IMPLEMENTED)})"
        )

    op.__name__ = name.rsplit(".", 1)[-1]
    return op


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return _missing(name)


_library.register()
_sglang_gates.install()
