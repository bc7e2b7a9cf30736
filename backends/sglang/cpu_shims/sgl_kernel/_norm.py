"""`torch.ops.sgl_kernel` RMS norms of Qwen3.5's layers.

- Gemma-style norms on each head of q and k (full attention): `x * rsqrt(mean(x**2) + eps) * (1 + w)`;
- the gated norm of the GDN output: `x * rsqrt(mean(x**2) + eps) * w * silu(gate)` (the weight not shifted).

Math in float32, results in the input's dtype, as SGLang's kernels and transformers' modules do.
"""

import torch
import torch.nn.functional as F


def _normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _gemma_rows(x: torch.Tensor, weight: torch.Tensor, eps: float, head_dim: int) -> torch.Tensor:
    """Each `head_dim` row of `x` normalised: a new contiguous `[rows, head_dim]` tensor in `x`'s dtype."""
    rows = x.reshape(-1, head_dim)
    return (_normalize(rows, eps) * (1.0 + weight.float())).to(x.dtype)


def fused_qk_gemma_rmsnorm_cpu(
    q: torch.Tensor,
    k: torch.Tensor,
    q_weight: torch.Tensor,
    k_weight: torch.Tensor,
    eps: float,
    head_dim: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gemma RMS norm of every head of `q` `[T, H * D]` and `k` `[T, Hk * D]` (any row stride): new tensors
    `[T * H, D]` and `[T * Hk, D]`."""
    return _gemma_rows(q, q_weight, eps, head_dim), _gemma_rows(k, k_weight, eps, head_dim)


def fused_qk_gemma_rmsnorm_with_gate_cpu(
    q_gate: torch.Tensor,
    k: torch.Tensor,
    q_weight: torch.Tensor,
    k_weight: torch.Tensor,
    eps: float,
    head_dim: int,
    num_heads: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`q_gate` `[T, H * 2D]` holds, per head, the query then its output gate (`[q_h0, gate_h0, q_h1, ...]`).
    Returns the normalised queries `[T * H, D]`, the normalised keys `[T * Hk, D]` and the gates `[T * H, D]`, all
    new contiguous tensors."""
    per_head = q_gate.reshape(q_gate.shape[0], num_heads, 2 * head_dim)  # [T, H, 2D]
    query, gate = per_head[..., :head_dim], per_head[..., head_dim:]
    return (
        _gemma_rows(query, q_weight, eps, head_dim),
        _gemma_rows(k, k_weight, eps, head_dim),
        gate.reshape(-1, head_dim).contiguous(),
    )


def fused_rmsnorm_gated_cpu(
    input: torch.Tensor, weight: torch.Tensor, gate: torch.Tensor, eps: float
) -> torch.Tensor:
    """`rmsnorm(input) * weight * silu(gate)` over the last dimension (norm before gate): a new tensor."""
    normed = weight * _normalize(input, eps).to(input.dtype)
    return (normed * F.silu(gate.float().reshape(input.shape))).to(input.dtype)
