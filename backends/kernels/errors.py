"""Errors of the Triton attention kernels.

Both are raised by a launcher before anything is launched or written.

KernelError
├── KernelInputError        misuse: a tensor on the wrong device, of the wrong dtype or shape, with unsupported
│                           strides, a head_dim that is not a power of two in 16..256, a bad block_size or scale;
│                           the message names the argument and what was expected
└── KernelUnavailableError  the environment cannot run Triton kernels: triton is not installed (it comes with the
                            `dev` extra) or, outside `TRITON_INTERPRET=1`, no CUDA device is present

Values inside index tensors (slots, block ids, lengths) are not checked: that would cost a device sync per call.
"""


class KernelError(Exception):
    """Base class of the kernels' errors."""


class KernelInputError(KernelError, ValueError):
    """An argument a launcher cannot accept; the message names it and what was expected."""


class KernelUnavailableError(KernelError, RuntimeError):
    """Triton is not importable, or no CUDA device is present outside interpreter mode."""
