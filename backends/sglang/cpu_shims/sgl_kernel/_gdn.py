"""`torch.ops.sgl_kernel` ops of the Gated DeltaNet layer: the gates, and the fused decode step.

SGLang binds both when its GDN modules are imported on the CPU: `fused_gdn_gating_cpu` gives the prefill its
`(g, beta)`, and `fused_sigmoid_gating_delta_rule_update_cpu` is the decode step, which computes the gates itself.
"""

import torch

from . import _delta_rule, _packed


def fused_gdn_gating_cpu(
    A_log: torch.Tensor, a: torch.Tensor, b: torch.Tensor, dt_bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`g = -exp(A_log) * softplus(a + dt_bias)` and `beta = sigmoid(b)` for `a`, `b` `[T, HV]`: two float32
    tensors `[1, T, HV]`, the layout the chunked delta rule takes."""
    g, beta = _delta_rule.gates(A_log, a, b, dt_bias)
    return g[None], beta[None]


def fused_sigmoid_gating_delta_rule_update_cpu(
    A_log: torch.Tensor,
    dt_bias: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    initial_state_source: torch.Tensor,
    initial_state_indices: torch.Tensor,
    cu_seqlens: torch.Tensor,
    use_qk_l2norm_in_kernel: bool,
    softplus_beta: float = 1.0,
    softplus_threshold: float = 20.0,
) -> torch.Tensor:
    """Decode: the gates from `a`, `b` `[T, HV]`, then the delta rule token by token for the packed sequences
    (`cu_seqlens`) of `q`, `k` `[1, T, H, K]` and `v` `[1, T, HV, V]`.

    Sequence `i` starts from `initial_state_source[initial_state_indices[i]]` (`[HV, V, K]`) and that slot receives
    its final state; a negative slot is a padding row: no state read or written, zero outputs. Returns the
    outputs `[1, T, HV, V]`."""
    g, beta = _delta_rule.gates(A_log, a, b, dt_bias, softplus_beta, softplus_threshold)
    spans = _packed.spans(cu_seqlens, q.shape[1])
    slots = torch.tensor(_packed.slots(initial_state_indices, len(spans)), dtype=torch.int64)
    live = slots >= 0
    states = torch.zeros((len(spans), *initial_state_source.shape[1:]), dtype=torch.float32, device=v.device)
    states[live] = initial_state_source[slots[live]].float()
    result = torch.zeros(v.shape, dtype=torch.float32, device=v.device)
    lengths = {end - start for start, end in spans}
    if len(lengths) == 1 and spans[0][0] == 0:  # the usual batch: every request brings as many tokens
        shape = (len(spans), lengths.pop())
        used = shape[0] * shape[1]
        out, finals = _delta_rule.recurrent(
            q[0, :used].unflatten(0, shape),  # [N * L, H, K] -> [N, L, H, K]
            k[0, :used].unflatten(0, shape),
            v[0, :used].unflatten(0, shape),
            g[:used].unflatten(0, shape),
            beta[:used].unflatten(0, shape),
            states,
            l2norm=use_qk_l2norm_in_kernel,
        )
        result[0, :used] = (out * live[:, None, None, None]).flatten(0, 1)
    else:
        finals = torch.zeros_like(states)
        for i, (start, end) in enumerate(spans):
            if live[i]:
                result[:, start:end], finals[i : i + 1] = _delta_rule.recurrent(
                    q[:, start:end],
                    k[:, start:end],
                    v[:, start:end],
                    g[None, start:end],
                    beta[None, start:end],
                    states[i : i + 1],
                    l2norm=use_qk_l2norm_in_kernel,
                )
    initial_state_source[slots[live]] = finals[live].to(initial_state_source.dtype)
    return result.to(q.dtype)
