"""`PipoModel`: compressor -> backbone on pairs -> LM head (token1) and MTP -> LM head (token2),
plus the confidence head that gates token2.

Shapes: `T` token slots (even), `L = T / PAIR` pairs, `H` hidden size, `V` vocabulary.
RoPE position of pair j is j for the backbone and the MTP alike.
"""

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel

from pipo_agent.backends.model.backbone import (
    build_backbone,
    cache_kwarg,
    causal_mask,
    full_attention_layer_index,
    output_cache,
)
from pipo_agent.backends.model.compressor import build_compressor
from pipo_agent.backends.model.confidence import build_confidence_head
from pipo_agent.backends.model.config import PipoConfig
from pipo_agent.backends.model.constants import PAIR
from pipo_agent.backends.model.mtp import MTPModule


@dataclass
class PipoOutput:
    """Teacher-forced forward over `[B, T]` slots."""

    hidden: torch.Tensor  # [B, L, H]    backbone hidden of every pair (post final norm)
    mtp_hidden: torch.Tensor  # [B, L-1, H]  MTP hidden for pairs 0..L-2 (fed x_{2j+2})
    logits1: torch.Tensor  # [B, L-1, V]  backbone logits, predict x_{2j+2}
    logits2: torch.Tensor  # [B, L-1, V]  MTP logits, predict x_{2j+3}


class PipoModel(nn.Module):
    def __init__(self, config: PipoConfig, backbone: PreTrainedModel | None = None) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone if backbone is not None else build_backbone(config.backbone)
        hidden = config.hidden_size
        self.compressor = build_compressor(config.compressor_type, hidden)
        self.mtp = MTPModule(self.backbone)
        eps = float(getattr(self.backbone.config, "rms_norm_eps", 1e-6))
        self.confidence_head = build_confidence_head(config.confidence_head, hidden, eps)
        self._cache_kw = cache_kwarg(self.backbone.model)

    @classmethod
    def from_teacher(
        cls,
        teacher: PreTrainedModel,
        *,
        pad_token_id: int,
        eos_token_ids: tuple[int, ...] = (),
        compressor_type: str = "mlp",
        confidence_head: str = "hm",
    ) -> "PipoModel":
        """A PIPO student from a trained AR model; its MTP layer starts as a copy of the teacher's last
        full-attention layer (the teacher has no native MTP module to reuse)."""
        backbone = copy.deepcopy(teacher).float()
        config = PipoConfig(
            backbone=backbone.config.to_dict(),
            compressor_type=compressor_type,
            confidence_head=confidence_head,
            pad_token_id=pad_token_id,
            eos_token_ids=eos_token_ids,
        )
        model = cls(config, backbone)
        layers = backbone.model.layers
        types = getattr(backbone.config, "layer_types", None) or ["full_attention"] * len(layers)
        last_full = max(i for i, kind in enumerate(types) if kind == "full_attention")
        assert full_attention_layer_index(backbone.config) <= last_full
        model.mtp.layers[0].load_state_dict(layers[last_full].state_dict())
        return model

    # ---- building blocks, shared by the teacher-forced forward, the decoders and the engine ----

    @property
    def embed_tokens(self) -> nn.Embedding:
        return self.backbone.model.embed_tokens

    @property
    def lm_head(self) -> nn.Linear:
        return self.backbone.lm_head

    def new_caches(self) -> tuple[DynamicCache, DynamicCache]:
        """Fresh (backbone, MTP) KV caches; one entry per pair in both."""
        return DynamicCache(config=self.backbone.config), self.mtp.new_cache()

    def compress(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.compressor(self.embed_tokens(input_ids))  # [B, T] -> [B, T/2, H]

    def positions(self, batch: int, start: int, length: int) -> torch.Tensor:
        device = self.embed_tokens.weight.device
        return torch.arange(start, start + length, device=device)[None].expand(batch, -1)  # [B, n]

    def run_backbone(self, latents: torch.Tensor, start: int = 0, cache: Any = None) -> torch.Tensor:
        """Backbone over latents at pair positions start.. ; returns post-norm hidden `[B, n, H]`."""
        batch, length, _ = latents.shape
        out = self.backbone.model(
            inputs_embeds=latents,
            position_ids=self.positions(batch, start, length),
            use_cache=cache is not None,
            **{self._cache_kw: cache},
        )
        if cache is not None:
            assert output_cache(out) is cache
        return out.last_hidden_state

    def run_mtp(
        self, token1_ids: torch.Tensor, hidden: torch.Tensor, start: int = 0, cache: Any = None
    ) -> torch.Tensor:
        """MTP over n positions fed (token1 ids `[B, n]`, backbone hidden `[B, n, H]`); returns `[B, n, H]`."""
        batch, length = token1_ids.shape
        pos = self.positions(batch, start, length)
        embeds = self.embed_tokens(token1_ids)
        rope = self.backbone.model.rotary_emb(embeds, pos)
        mask = causal_mask(length, start, embeds.device)
        return self.mtp(embeds, hidden, pos, rope, mask, cache)

    def confidence_logits(
        self,
        hidden: torch.Tensor,
        mtp_hidden: torch.Tensor,
        draft_ids: torch.Tensor | None = None,
        mtp_logits: torch.Tensor | None = None,
        head: nn.Module | None = None,
    ) -> torch.Tensor:
        """Raw confidence logit per position; the token-aware head also needs the draft and MTP logits.

        `head` evaluates another confidence head on this model's states (ablations train one alongside).
        """
        head = self.confidence_head if head is None else head
        if not getattr(head, "uses_draft", False):
            return head(hidden, mtp_hidden)
        if draft_ids is None or mtp_logits is None:
            raise ValueError("the token-aware confidence head needs draft_ids and mtp_logits")
        logprobs = (
            torch.log_softmax(mtp_logits.float(), dim=-1).gather(-1, draft_ids.unsqueeze(-1)).squeeze(-1)
        )
        # The draft's embedding is an input feature, never a path for gradients into the embeddings.
        return head(hidden, mtp_hidden, self.embed_tokens(draft_ids).detach(), logprobs)

    # ---- teacher-forced forward (training, OPD student, equivalence tests) ----

    def forward(self, input_ids: torch.Tensor) -> PipoOutput:
        """`input_ids [B, T]`, T even. Right padding needs no mask: attention is causal."""
        _, total = input_ids.shape
        if total % PAIR or total < 2 * PAIR:
            raise ValueError(f"PIPO forward needs an even length of at least {2 * PAIR} slots, got {total}")
        hidden = self.run_backbone(self.compress(input_ids))  # [B, L, H]
        h_in = hidden[:, :-1]  # [B, L-1, H]; the last pair has no next-pair target
        token1 = input_ids[:, PAIR::PAIR]  # [B, L-1] = x_2, x_4, ...
        mtp_hidden = self.run_mtp(token1, h_in)
        return PipoOutput(
            hidden=hidden,
            mtp_hidden=mtp_hidden,
            logits1=self.lm_head(h_in),
            logits2=self.lm_head(mtp_hidden),
        )
