"""Suite-wide setup, loaded before any test module is imported.

Without a CUDA device, Triton kernels run in Triton's CPU interpreter. Triton reads `TRITON_INTERPRET` when a
function is jitted, so it must be set before any test module imports a kernel module.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
