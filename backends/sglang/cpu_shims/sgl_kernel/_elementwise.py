"""`torch.ops.sgl_kernel` data movement around Qwen3.5's attention: the output gate and the GDN input split."""

import torch


def fused_sigmoid_mul_cpu(x: torch.Tensor, gate: torch.Tensor) -> None:
    """`x <- x * sigmoid(gate)` in place. `x` is `[T, H * D]`; `gate` has its shape, or is a (possibly strided)
    `[T, H, D]` view."""
    x.copy_(x.float() * gate.reshape(x.shape).float().sigmoid())


def fused_qkvzba_split_reshape_cat_contiguous_cpu(
    mixed_qkvz: torch.Tensor,
    mixed_ba: torch.Tensor,
    num_heads_qk: int,
    num_heads_v: int,
    head_qk: int,
    head_v: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Splits the GDN input projections of Qwen3.5's layout, `mixed_qkvz` `[T, q | k | v | z]` (each block all
    heads, head-major) and `mixed_ba` `[T, b | a]`, into new contiguous tensors: `mixed_qkv` `[T, q | k | v]`
    (the convolution's input), `z` `[T, HV, V]`, `b` and `a` `[T, HV]`."""
    qkv_width = 2 * num_heads_qk * head_qk + num_heads_v * head_v
    if mixed_qkvz.shape[-1] != qkv_width + num_heads_v * head_v or mixed_ba.shape[-1] != 2 * num_heads_v:
        raise ValueError(
            f"projections of widths {mixed_qkvz.shape[-1]} and {mixed_ba.shape[-1]} do not hold {num_heads_qk} "
            f"q/k heads of {head_qk} and {num_heads_v} v heads of {head_v}"
        )
    tokens = mixed_qkvz.shape[0]
    mixed_qkv = mixed_qkvz[:, :qkv_width].contiguous()
    z = (
        mixed_qkvz[:, qkv_width:].reshape(tokens, num_heads_v, head_v).contiguous()
    )  # [T, HV * V] -> [T, HV, V]
    return mixed_qkv, z, mixed_ba[:, :num_heads_v].contiguous(), mixed_ba[:, num_heads_v:].contiguous()
