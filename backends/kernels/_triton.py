"""Optional Triton: the kernel modules import without it, so the PyTorch references stay usable.

Kernels are decorated with `lazy_jit` rather than `triton.jit`: Triton reads `TRITON_INTERPRET` when it wraps a
function, so wrapping at first launch (once per mode) honours the mode in force then, whatever imported this
package first.
"""

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pipo_agent.backends.kernels.errors import KernelUnavailableError

if TYPE_CHECKING:
    import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the references still work; launchers raise KernelUnavailableError
    triton = None
    tl = None

__all__ = [
    "interpret_mode",
    "interpreter_upcast",
    "lazy_jit",
    "require_triton",
    "tl",
    "triton",
    "triton_available",
]


def interpret_mode() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (`TRITON_INTERPRET=1`)."""
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:  # triton >= 3.4 reads the variable through its knobs
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def interpreter_upcast(dtype: "torch.dtype") -> bool:
    """Whether a kernel must compute in fp32 what it loads as `dtype`: Triton's interpreter stores bfloat16 as
    raw uint16 and does no bfloat16 arithmetic (its `tl.dot` multiplies the bit patterns, triton-lang/triton
    #11584). Compiled kernels keep bfloat16 so their dots run on tensor cores."""
    import torch

    return dtype == torch.bfloat16 and interpret_mode()


def triton_available() -> bool:
    """True when triton imports and can run here: in interpreter mode, or with a CUDA device present."""
    if triton is None:
        return False
    if interpret_mode():
        return True
    import torch

    return torch.cuda.is_available()


def require_triton() -> None:
    """Raise `KernelUnavailableError` unless Triton kernels can be launched here."""
    if triton is None:
        raise KernelUnavailableError(
            "the Triton kernels need the `triton` package (pip install 'pipo-agent[dev]' or 'triton>=3.2') "
            "and a CUDA GPU; the *_reference functions run without either"
        )
    if not triton_available():
        raise KernelUnavailableError(
            "the Triton kernels need a CUDA GPU; set TRITON_INTERPRET=1 to run them (slowly) on CPU tensors"
        )


class _LazyKernel:
    """A kernel function wrapped by `triton.jit` on first launch, once per interpreter mode."""

    def __init__(self, fn: Callable[..., None]) -> None:
        self.fn = fn
        self._jitted: dict[bool, Any] = {}

    def __getitem__(self, grid: tuple[int, ...]) -> Callable[..., Any]:
        mode = interpret_mode()
        if mode not in self._jitted:
            self._jitted[mode] = triton.jit(self.fn)
        return self._jitted[mode][grid]


def lazy_jit(fn: Callable[..., None]) -> _LazyKernel:
    """Decorator: `kernel[grid](...)` launches `fn` through `triton.jit`, wrapped at first launch."""
    return _LazyKernel(fn)
