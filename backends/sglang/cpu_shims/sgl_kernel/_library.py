"""Registers this stand-in's `torch.ops.sgl_kernel` ops with torch (a `torch.library` fragment, CPU kernels).

SGLang reaches most of its CPU kernels as `torch.ops.sgl_kernel.<name>`, several of them bound when its modules are
imported, so the ops must exist as soon as `sgl_kernel` is. The schemas name the arguments as SGLang's call sites
pass them (some by keyword) and mark the tensors an op writes in place (`Tensor(a!)`).
"""

from collections.abc import Callable
from typing import Any

import torch

from . import _elementwise, _gdn, _norm

NAMESPACE = "sgl_kernel"

SCHEMAS: dict[str, tuple[str, Callable[..., Any]]] = {
    "fused_sigmoid_mul_cpu": ("(Tensor(a!) x, Tensor gate) -> ()", _elementwise.fused_sigmoid_mul_cpu),
    "fused_qkvzba_split_reshape_cat_contiguous_cpu": (
        "(Tensor mixed_qkvz, Tensor mixed_ba, int num_heads_qk, int num_heads_v, int head_qk, int head_v)"
        " -> (Tensor, Tensor, Tensor, Tensor)",
        _elementwise.fused_qkvzba_split_reshape_cat_contiguous_cpu,
    ),
    "fused_qk_gemma_rmsnorm_cpu": (
        "(Tensor q, Tensor k, Tensor q_weight, Tensor k_weight, float eps, int head_dim) -> (Tensor, Tensor)",
        _norm.fused_qk_gemma_rmsnorm_cpu,
    ),
    "fused_qk_gemma_rmsnorm_with_gate_cpu": (
        "(Tensor q_gate, Tensor k, Tensor q_weight, Tensor k_weight, float eps, int head_dim, int num_heads)"
        " -> (Tensor, Tensor, Tensor)",
        _norm.fused_qk_gemma_rmsnorm_with_gate_cpu,
    ),
    "fused_rmsnorm_gated_cpu": (
        "(Tensor input, Tensor weight, Tensor gate, float eps) -> Tensor",
        _norm.fused_rmsnorm_gated_cpu,
    ),
    "fused_gdn_gating_cpu": (
        "(Tensor A_log, Tensor a, Tensor b, Tensor dt_bias) -> (Tensor, Tensor)",
        _gdn.fused_gdn_gating_cpu,
    ),
    "fused_sigmoid_gating_delta_rule_update_cpu": (
        "(Tensor A_log, Tensor dt_bias, Tensor q, Tensor k, Tensor v, Tensor a, Tensor b,"
        " Tensor(a!) initial_state_source, Tensor initial_state_indices, Tensor cu_seqlens,"
        " bool use_qk_l2norm_in_kernel, float softplus_beta=1.0, float softplus_threshold=20.0) -> Tensor",
        _gdn.fused_sigmoid_gating_delta_rule_update_cpu,
    ),
}

_fragments: list[torch.library.Library] = []  # torch drops an op when its Library object is collected


def register() -> None:
    """Defines each op of `SCHEMAS` that torch does not know yet (so loading this package twice is harmless)."""
    fragment = torch.library.Library(NAMESPACE, "FRAGMENT")
    for name, (signature, impl) in SCHEMAS.items():
        if hasattr(getattr(torch.ops, NAMESPACE), name):
            continue
        fragment.define(name + signature)
        fragment.impl(name, impl, "CPU")
    _fragments.append(fragment)
