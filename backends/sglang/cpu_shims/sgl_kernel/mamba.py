"""`sgl_kernel.mamba`: the module functions SGLang's CPU path imports for linear-attention layers.

SGLang's GDN backend (Qwen3.5, Qwen3-Next) does `from sgl_kernel.mamba import causal_conv1d_fn_cpu,
causal_conv1d_update_cpu, chunk_gated_delta_rule_cpu`, and its KDA backend imports `causal_conv1d_update_cpu`.
They work on SGLang's per-layer state pools in place:

- conv states `[slots, dim, W - 1]`: the last `W - 1` inputs of a request's depthwise causal convolution;
- recurrent states `[slots, HV, V, K]`: one gated-delta-rule state per value head.

A batch addresses the pools with one slot per request (`cache_indices`); a negative slot (`PAD_SLOT_ID`) marks a
padding row, which reads and writes no state and outputs zeros. Packed sequences are described by
`query_start_loc` / `cu_seqlens` (`[N + 1]`, from 0). Math in float32, results in the input's dtype, states in
the pool's: SGLang allocates conv states in bfloat16 whatever the model's dtype unless `SGLANG_MAMBA_CONV_DTYPE`
says otherwise, which rounds them at every prefill chunk and decode step.
"""

import torch
import torch.nn.functional as F

from . import _delta_rule, _packed

__all__ = ["causal_conv1d_fn_cpu", "causal_conv1d_update_cpu", "chunk_gated_delta_rule_cpu"]

PAD_SLOT_ID = -1


def _activate(out: torch.Tensor, activation: str | bool | None) -> torch.Tensor:
    if activation in ("silu", "swish", True):
        return F.silu(out)
    if activation in (None, False):
        return out
    raise ValueError(f"activation must be None, 'silu' or 'swish', not {activation!r}")


def _conv(window: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The valid depthwise convolution of `window` `[N, dim, W - 1 + L]` with `weight` `[dim, W]`: `[N, dim, L]`."""
    bias = None if bias is None else bias.float()
    return F.conv1d(window, weight.float()[:, None, :], bias, groups=weight.shape[0])


def causal_conv1d_fn_cpu(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | bool | None = "silu",
    conv_states: torch.Tensor | None = None,
    has_initial_state: torch.Tensor | None = None,
    cache_indices: torch.Tensor | None = None,
    query_start_loc: torch.Tensor | None = None,
    seq_lens_cpu: list[int] | None = None,
) -> torch.Tensor:
    """Prefill: the causal depthwise convolution of packed sequences, `x` `[dim, total_tokens]` (any strides).

    Sequence `i` continues from `conv_states[cache_indices[i]]` when `has_initial_state[i]`, else from zeros;
    that slot then holds its last `W - 1` inputs. Returns a new `[dim, total_tokens]` tensor."""
    dim, total = x.shape
    width = weight.shape[-1]
    spans = _packed.spans(query_start_loc, total)
    if seq_lens_cpu is not None and list(seq_lens_cpu) != [end - start for start, end in spans]:
        raise ValueError(f"seq_lens_cpu {list(seq_lens_cpu)} disagrees with the sequences {spans}")
    slots = _packed.slots(cache_indices, len(spans))
    resume = [False] * len(spans) if has_initial_state is None else has_initial_state.tolist()
    out = torch.zeros(dim, total, dtype=torch.float32, device=x.device)
    for (start, end), slot, cont in zip(spans, slots, resume, strict=True):
        if slot < 0 or end == start:
            continue
        if cont and conv_states is not None:
            history = conv_states[slot].float()
        else:
            history = x.new_zeros(dim, width - 1, dtype=torch.float32)
        window = torch.cat([history, x[:, start:end].float()], dim=-1)  # [dim, W - 1 + L]
        out[:, start:end] = _activate(_conv(window[None], weight, bias)[0], activation)
        if conv_states is not None:
            conv_states[slot] = window[:, -(width - 1) :].to(conv_states.dtype)
    return out.to(x.dtype)


def causal_conv1d_update_cpu(
    x: torch.Tensor,
    conv_states: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | bool | None = None,
    conv_state_indices: torch.Tensor | None = None,
) -> torch.Tensor:
    """Decode: `L` new inputs per request, `x` `[N, dim]` (`L = 1`) or `[N, dim, L]`, through the window held in
    `conv_states[conv_state_indices[n]]` (slot `n` when no indices are given), which then holds the last
    `W - 1` inputs. Returns a new tensor shaped like `x`."""
    steps = x.unsqueeze(-1) if x.dim() == 2 else x  # [N, dim] -> [N, dim, 1]
    width = weight.shape[-1]
    slots = torch.tensor(_packed.slots(conv_state_indices, steps.shape[0]), dtype=torch.int64)
    rows = (slots >= 0).nonzero().squeeze(-1)
    window = torch.cat([conv_states[slots[rows]].float(), steps[rows].float()], dim=-1)  # [n, dim, W - 1 + L]
    out = torch.zeros(steps.shape, dtype=torch.float32, device=x.device)
    out[rows] = _activate(_conv(window, weight, bias), activation)
    conv_states[slots[rows]] = window[..., -(width - 1) :].to(conv_states.dtype)
    return out.reshape(x.shape).to(x.dtype)


def chunk_gated_delta_rule_cpu(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    initial_state: torch.Tensor,
    cu_seqlens: torch.Tensor,
    head_first: bool = False,
    use_qk_l2norm_in_kernel: bool = False,
    initial_state_indices: torch.Tensor | None = None,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, None]:
    """Prefill of the gated delta rule (`_delta_rule` has the math) for packed sequences: `q`, `k`
    `[1, T, H, K]`, `v` `[1, T, HV, V]`, log decays `g` and write strengths `beta` `[1, T, HV]`.

    Sequence `i` starts from `initial_state[initial_state_indices[i]]` (`[HV, V, K]`) and that slot receives its
    final state. There is no `has_initial_state`: SGLang zeroes a new request's slot, so a request without a prefix
    starts from zeros. Returns `(o, final_states, None)`: `o` `[1, T, HV, V]`, the final states `[N, HV, V, K]`
    (zeros for padding), and no per-chunk states (SGLang wants them only to snapshot states mid-prefill for
    its radix cache, which needs `--mamba-radix-cache-strategy no_buffer` on the CPU)."""
    if head_first:
        raise NotImplementedError(
            "chunk_gated_delta_rule_cpu takes [1, T, heads, dim] inputs, not head first"
        )
    if q.shape[0] != 1:
        raise ValueError(f"packed sequences come as a batch of one, not {q.shape[0]}")
    spans = _packed.spans(cu_seqlens, q.shape[1])
    slots = _packed.slots(initial_state_indices, len(spans))
    g, beta = g.reshape(v.shape[:3]), beta.reshape(v.shape[:3])
    out = torch.zeros(v.shape, dtype=torch.float32, device=v.device)
    finals = torch.zeros((len(spans), *initial_state.shape[1:]), dtype=torch.float32, device=v.device)
    for i, ((start, end), slot) in enumerate(zip(spans, slots, strict=True)):
        if slot < 0:
            continue
        out[0, start:end], finals[i] = _delta_rule.chunked(
            q[0, start:end],
            k[0, start:end],
            v[0, start:end],
            g[0, start:end],
            beta[0, start:end],
            initial_state[slot],
            l2norm=use_qk_l2norm_in_kernel,
            scale=scale,
        )
        initial_state[slot] = finals[i].to(initial_state.dtype)
    return out.to(q.dtype), finals.to(initial_state.dtype), None
