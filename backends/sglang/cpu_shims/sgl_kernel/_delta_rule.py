"""The gated delta rule of Gated DeltaNet (Qwen3.5's linear attention), in plain torch, in SGLang's layouts.

Per value head, with the state `S` of shape `[V, K]` (SGLang's pool layout: `[slots, HV, V, K]`), a token with
query `q`, key `k` (both L2-normalised when asked), value `v`, log-decay `g <= 0` and write strength `beta` does

    S <- exp(g) * S
    u  = beta * (v - S @ k)          # the delta rule: write only what S does not already predict
    S <- S + outer(u, k)
    o  = S @ (q * K**-0.5)

Query/key head `h` serves value heads `h * HV/H ... (h+1) * HV/H - 1`. `recurrent` runs this token by token
(decode); `chunked` gives the same result 64 tokens at a time (prefill), in the usual WY form: inside a chunk, with
`G` the running sum of `g`, the corrections `u` solve the unit lower-triangular system

    (I + A) u = beta * v - beta * exp(G) * (k @ S0.T),   A[t, j] = beta_t exp(G_t - G_j) (k_t . k_j) for j < t

and the outputs and the final state follow from `u` with two masked matmuls. Everything runs in float32.
"""

import torch
import torch.nn.functional as F

CHUNK_SIZE = 64  # the chunk of SGLang's Triton kernel; any size gives the same result up to rounding
L2NORM_EPS = 1e-6


def gates(
    A_log: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    dt_bias: torch.Tensor,
    softplus_beta: float = 1.0,
    softplus_threshold: float = 20.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(g, beta)` for `a`, `b` of shape `[..., HV]`: `g = -exp(A_log) * softplus(a + dt_bias)` and
    `beta = sigmoid(b)`, float32, shaped like `a`."""
    x = a.float() + dt_bias.float()
    g = -A_log.float().exp() * F.softplus(x, beta=softplus_beta, threshold=softplus_threshold)
    return g, b.float().sigmoid()


def _prepare(
    q: torch.Tensor, k: torch.Tensor, num_v_heads: int, l2norm: bool, scale: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 `q`, `k` of shape `[T, HV, K]`: normalised if asked, `q` scaled, each q/k head repeated for the
    value heads it serves."""
    q, k = q.float(), k.float()
    if l2norm:
        q = q * torch.rsqrt((q * q).sum(-1, keepdim=True) + L2NORM_EPS)
        k = k * torch.rsqrt((k * k).sum(-1, keepdim=True) + L2NORM_EPS)
    q = q * (q.shape[-1] ** -0.5 if scale is None else scale)
    group = num_v_heads // q.shape[-2]
    if group != 1:
        q = q.repeat_interleave(group, dim=-2)  # [T, H, K] -> [T, HV, K]
        k = k.repeat_interleave(group, dim=-2)
    return q, k


def recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    state: torch.Tensor,
    *,
    l2norm: bool,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token by token for `N` sequences of `T` tokens each: `q`, `k` `[N, T, H, K]`, `v` `[N, T, HV, V]`,
    `g`, `beta` `[N, T, HV]`, `state` `[N, HV, V, K]`. Returns the outputs `[N, T, HV, V]` (float32) and the
    final states (float32)."""
    num_v_heads = v.shape[-2]
    q, k = _prepare(q, k, num_v_heads, l2norm, scale)
    v, g, beta = v.float(), g.float(), beta.float()
    s = state.float().clone()
    out = torch.empty_like(v)
    for t in range(v.shape[1]):
        s = s * g[:, t, :, None, None].exp()
        u = beta[:, t, :, None] * (v[:, t] - (s @ k[:, t, :, :, None]).squeeze(-1))  # [N, HV, V]
        s = s + u[..., :, None] * k[:, t, :, None, :]
        out[:, t] = (s @ q[:, t, :, :, None]).squeeze(-1)
    return out, s


def chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    state: torch.Tensor,
    *,
    l2norm: bool,
    scale: float | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One sequence of `T` tokens in chunks: `q`, `k` `[T, H, K]`, `v` `[T, HV, V]`, `g`, `beta` `[T, HV]`,
    `state` `[HV, V, K]`. Returns the outputs `[T, HV, V]` (float32) and the final state (float32)."""
    num_v_heads = v.shape[-2]
    q, k = _prepare(q, k, num_v_heads, l2norm, scale)
    # heads first: [T, HV, D] -> [HV, T, D]
    q, k, v = (x.transpose(0, 1) for x in (q, k, v.float()))
    g, beta = g.float().transpose(0, 1), beta.float().transpose(0, 1)
    s = state.float()
    out = torch.empty_like(v)
    for start in range(0, v.shape[1], chunk_size):
        end = min(start + chunk_size, v.shape[1])
        out[:, start:end], s = _chunk(
            q[:, start:end], k[:, start:end], v[:, start:end], g[:, start:end], beta[:, start:end], s
        )
    return out.transpose(0, 1), s


def _chunk(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor, s: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk of `C` tokens, heads first: `q`, `k` `[HV, C, K]`, `v` `[HV, C, V]`, `g`, `beta` `[HV, C]`,
    `s` `[HV, V, K]`."""
    size = v.shape[1]
    cum = g.cumsum(-1)  # G_t: the log decay from the chunk's start to token t, inclusive
    causal = torch.ones(size, size, dtype=torch.bool, device=v.device).tril()
    # exp(G_t - G_j) for j <= t; the masked entries would overflow, so they become exp(-inf) = 0
    decay = (cum[:, :, None] - cum[:, None, :]).masked_fill(~causal, float("-inf")).exp()  # [HV, C, C]
    # the solve reads only the strictly lower triangle and takes the diagonal as ones: I + A
    system = beta[:, :, None] * (k @ k.transpose(-1, -2)) * decay
    rhs = beta[:, :, None] * (v - cum.exp()[:, :, None] * (k @ s.transpose(-1, -2)))  # [HV, C, V]
    u = torch.linalg.solve_triangular(system, rhs, upper=False, unitriangular=True)
    out = cum.exp()[:, :, None] * (q @ s.transpose(-1, -2)) + ((q @ k.transpose(-1, -2)) * decay) @ u
    to_end = (cum[:, -1:] - cum).exp()  # exp(G_C - G_j)
    s = cum[:, -1, None, None].exp() * s + u.transpose(-1, -2) @ (k * to_end[:, :, None])
    return out, s
