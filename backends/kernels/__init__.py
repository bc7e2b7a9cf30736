"""Triton kernels of the embedded engine: paged KV store, decode attention and extend (prefill) attention.

KV layout: `k_cache`, `v_cache` `[num_slots, num_kv_heads, head_dim]`, contiguous, `num_slots = num_blocks *
block_size`; logical position p of sequence b lives in slot `block_tables[b, p // block_size] * block_size +
p % block_size`. Each kernel has a plain PyTorch `*_reference` with the same arguments; the references need
neither triton nor a GPU. The launchers need triton (the `dev` extra) and a CUDA device, or `TRITON_INTERPRET=1`.
"""

from pipo_agent.backends.kernels._triton import triton_available
from pipo_agent.backends.kernels.decode_attention import (
    paged_decode_attention,
    paged_decode_attention_reference,
)
from pipo_agent.backends.kernels.errors import KernelError, KernelInputError, KernelUnavailableError
from pipo_agent.backends.kernels.extend_attention import (
    paged_extend_attention,
    paged_extend_attention_reference,
)
from pipo_agent.backends.kernels.store_kv import store_kv, store_kv_reference

__all__ = [
    "KernelError",
    "KernelInputError",
    "KernelUnavailableError",
    "paged_decode_attention",
    "paged_decode_attention_reference",
    "paged_extend_attention",
    "paged_extend_attention_reference",
    "store_kv",
    "store_kv_reference",
    "triton_available",
]
