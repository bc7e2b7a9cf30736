"""Launcher-side argument checks shared by the kernels; each failure raises `KernelInputError`.

Only metadata is read (device, dtype, shape, strides): nothing here synchronises with the GPU.
"""

import math

import torch

from pipo_agent.backends.kernels import _triton
from pipo_agent.backends.kernels.errors import KernelInputError

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MIN_HEAD_DIM = 16  # tl.dot needs every dimension >= 16
MAX_HEAD_DIM = 256


def check_device(**tensors: torch.Tensor) -> torch.device:
    """All tensors on one device: CUDA, or any device under TRITON_INTERPRET=1."""
    devices = {name: t.device for name, t in tensors.items()}
    first = next(iter(devices.values()))
    if any(d != first for d in devices.values()):
        listing = ", ".join(f"{n}={d}" for n, d in devices.items())
        raise KernelInputError(f"all tensors must be on one device, got {listing}")
    if first.type != "cuda" and not _triton.interpret_mode():
        raise KernelInputError(
            f"tensors must be on a CUDA device, got {first} (TRITON_INTERPRET=1 runs the kernels on CPU)"
        )
    return first


def check_float(name: str, t: torch.Tensor, ndim: int) -> None:
    if t.dtype not in FLOAT_DTYPES:
        raise KernelInputError(f"{name} must be float16, bfloat16 or float32, got {t.dtype}")
    check_ndim(name, t, ndim)


def check_index(name: str, t: torch.Tensor, dtype: torch.dtype, ndim: int) -> None:
    if t.dtype != dtype:
        raise KernelInputError(f"{name} must be {dtype}, got {t.dtype}")
    check_ndim(name, t, ndim)
    if t.shape[-1] > 1 and t.stride(-1) != 1:
        raise KernelInputError(f"{name} must be contiguous in its last dimension, got strides {t.stride()}")


def check_ndim(name: str, t: torch.Tensor, ndim: int) -> None:
    if t.dim() != ndim:
        raise KernelInputError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")


def check_shape(name: str, t: torch.Tensor, expected: tuple[int, ...]) -> None:
    if tuple(t.shape) != expected:
        raise KernelInputError(f"{name} must have shape {expected}, got {tuple(t.shape)}")


def check_same_dtype(**tensors: torch.Tensor) -> None:
    dtypes = {name: t.dtype for name, t in tensors.items()}
    if len(set(dtypes.values())) > 1:
        listing = ", ".join(f"{n}={d}" for n, d in dtypes.items())
        raise KernelInputError(f"dtypes must match, got {listing}")


def check_last_dim_contiguous(name: str, t: torch.Tensor) -> None:
    if t.stride(-1) != 1:
        raise KernelInputError(f"{name} must be contiguous in head_dim (stride 1), got strides {t.stride()}")


def check_head_dim(head_dim: int) -> None:
    is_pow2 = head_dim > 0 and head_dim & (head_dim - 1) == 0
    if not is_pow2 or not MIN_HEAD_DIM <= head_dim <= MAX_HEAD_DIM:
        raise KernelInputError(
            f"head_dim must be a power of 2 in {MIN_HEAD_DIM}..{MAX_HEAD_DIM} (tl.arange needs a power of 2), "
            f"got {head_dim}"
        )


def check_kv_cache(k_cache: torch.Tensor, v_cache: torch.Tensor, block_size: int | None = None) -> None:
    """`[num_slots, num_kv_heads, head_dim]`, contiguous, k and v alike; num_slots a multiple of block_size."""
    check_float("k_cache", k_cache, 3)
    check_shape("v_cache", v_cache, tuple(k_cache.shape))
    check_same_dtype(k_cache=k_cache, v_cache=v_cache)
    for name, cache in (("k_cache", k_cache), ("v_cache", v_cache)):
        if not cache.is_contiguous():
            raise KernelInputError(f"{name} must be contiguous, got strides {cache.stride()}")
    check_head_dim(k_cache.shape[2])
    if block_size is not None:
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise KernelInputError(f"block_size must be a positive int, got {block_size!r}")
        if k_cache.shape[0] % block_size:
            raise KernelInputError(
                f"k_cache holds {k_cache.shape[0]} slots, not a multiple of block_size={block_size}"
            )


def check_gqa(num_q_heads: int, num_kv_heads: int) -> None:
    if num_kv_heads < 1 or num_q_heads % num_kv_heads:
        raise KernelInputError(
            f"num_q_heads ({num_q_heads}) must be a positive multiple of num_kv_heads ({num_kv_heads})"
        )


def check_scale(scale: float) -> None:
    if (
        isinstance(scale, bool)
        or not isinstance(scale, int | float)
        or not math.isfinite(scale)
        or scale <= 0
    ):
        raise KernelInputError(f"scale must be a finite positive float, got {scale!r}")
