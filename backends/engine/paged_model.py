"""The backbone's decoder layers and the MTP layer run over flattened varlen rows with paged KV.

The weights are the Hugging Face modules themselves (`input_layernorm`, `self_attn.{q,k,v,o}_proj`, optional
`q_norm`/`k_norm`, `post_attention_layernorm`, `mlp`), so the engine serves exactly the model that was trained and
the reference decoder runs; only attention is replaced, by `AttentionBackend` over the pair-slot pool. This is the
layer anatomy of Llama, Qwen2 and Qwen3. Qwen3.5's hybrid layers (linear attention, gated attention) are served
by the reference decoder and by SGLang, not by this engine.
"""

from dataclasses import dataclass

import torch
from torch import nn

from pipo_agent.backends.engine.attention import AttentionBackend, AttentionMetadata, KVPair
from pipo_agent.backends.engine.errors import EngineConfigError

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3")


def check_backbone(config: object) -> None:
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise EngineConfigError(
            f"the embedded engine serves backbones of type {', '.join(SUPPORTED_MODEL_TYPES)}; got {model_type!r} "
            "(use the reference decoder or the SGLang backend for it)"
        )
    if getattr(config, "use_sliding_window", False):
        raise EngineConfigError("sliding-window attention is not supported by the embedded engine")


def kv_layout(config: object) -> tuple[int, int, int]:
    """(backbone layers, KV heads, head dim) of a Hugging Face backbone config."""
    heads = int(config.num_attention_heads)  # type: ignore[attr-defined]
    head_dim = getattr(config, "head_dim", None) or int(config.hidden_size) // heads  # type: ignore[attr-defined]
    return int(config.num_hidden_layers), int(config.num_key_value_heads), int(head_dim)  # type: ignore[attr-defined]


@dataclass
class KVCache:
    """The pool: one (k, v) pair per backbone layer and, for PIPO, one for the MTP layer, same slots."""

    layers: list[KVPair]
    mtp: KVPair | None

    @classmethod
    def allocate(
        cls,
        num_slots: int,
        num_layers: int,
        num_kv_heads: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
        *,
        with_mtp: bool,
    ) -> "KVCache":
        def pair() -> KVPair:
            shape = (num_slots, num_kv_heads, head_dim)
            return torch.zeros(shape, dtype=dtype, device=device), torch.zeros(
                shape, dtype=dtype, device=device
            )

        return cls([pair() for _ in range(num_layers)], pair() if with_mtp else None)

    @staticmethod
    def bytes_per_slot(num_layers: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype) -> int:
        """K and V of one slot in `num_layers` layers."""
        return 2 * num_layers * num_kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()

    @property
    def nbytes(self) -> int:
        pairs = self.layers + ([self.mtp] if self.mtp is not None else [])
        return sum(k.nbytes + v.nbytes for k, v in pairs)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_tables(rotary_emb: nn.Module, like: torch.Tensor, positions: torch.Tensor) -> KVPair:
    """cos/sin `[N, 1, D]` for rows at `positions` `[N]` (the backbone's own rotary embedding)."""
    cos, sin = rotary_emb(like[None], positions[None])  # [1, N, D] each
    return cos[0, :, None, :], sin[0, :, None, :]


def attention(
    attn: nn.Module,
    x: torch.Tensor,
    rope: KVPair,
    cache: KVPair,
    meta: AttentionMetadata,
    backend: AttentionBackend,
) -> torch.Tensor:
    """Self-attention of rows `x` `[N, H]`: project, normalise (Qwen3), rotate, store K/V, attend, project."""
    head_dim = attn.head_dim
    n = x.shape[0]
    q = attn.q_proj(x).view(n, -1, head_dim)  # [N, H] -> [N, Hq, D]
    k = attn.k_proj(x).view(n, -1, head_dim)  # [N, Hkv, D]
    v = attn.v_proj(x).view(n, -1, head_dim)
    if hasattr(attn, "q_norm"):
        q, k = attn.q_norm(q), attn.k_norm(k)
    cos, sin = rope
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    backend.store(k, v, cache, meta)
    out = backend.attend(q, cache, meta, float(attn.scaling))  # [N, Hq, D]
    return attn.o_proj(out.reshape(n, -1).to(x.dtype))


def decoder_layer(
    layer: nn.Module,
    x: torch.Tensor,
    rope: KVPair,
    cache: KVPair,
    meta: AttentionMetadata,
    backend: AttentionBackend,
) -> torch.Tensor:
    h = x + attention(layer.self_attn, layer.input_layernorm(x), rope, cache, meta, backend)
    return h + layer.mlp(layer.post_attention_layernorm(h))


def run_layers(
    base_model: nn.Module,
    x: torch.Tensor,
    positions: torch.Tensor,
    kv: KVCache,
    meta: AttentionMetadata,
    backend: AttentionBackend,
) -> torch.Tensor:
    """The backbone's decoder stack and final norm over rows `x` `[N, H]` at `positions` `[N]`."""
    rope = rope_tables(base_model.rotary_emb, x, positions)
    for layer, cache in zip(base_model.layers, kv.layers, strict=True):
        x = decoder_layer(layer, x, rope, cache, meta, backend)
    return base_model.norm(x)


def run_mtp(
    mtp: nn.Module,
    rotary_emb: nn.Module,
    token_embeds: torch.Tensor,
    hidden: torch.Tensor,
    positions: torch.Tensor,
    cache: KVPair,
    meta: AttentionMetadata,
    backend: AttentionBackend,
) -> torch.Tensor:
    """The MTP module over rows: `E[token1]` `[N, H]` and backbone hidden `[N, H]` -> `m` `[N, H]`."""
    fused = torch.cat([mtp.pre_fc_norm_embedding(token_embeds), mtp.pre_fc_norm_hidden(hidden)], dim=-1)
    u = mtp.fc(fused)  # [N, 2H] -> [N, H]
    rope = rope_tables(rotary_emb, u, positions)
    return mtp.norm(decoder_layer(mtp.layers[0], u, rope, cache, meta, backend))
