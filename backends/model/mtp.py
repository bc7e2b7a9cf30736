"""The MTP module ("pair-out"): predicts the second token of the next pair.

    u_j = fc([norm_emb(E[x_{2j+2}]) ; norm_hid(h_j)])     # [.., 2H] -> [.., H]
    m_j = norm(DecoderLayer(u_0..u_j))                   # one layer of the backbone's class, own KV cache
    logits2_j = W_out m_j                                # predicts x_{2j+3}

Parameter names match the published layout: `fc`, `pre_fc_norm_embedding`, `pre_fc_norm_hidden`,
`layers.0.*`, `norm`.
"""

from typing import Any

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel

from pipo_agent.backends.model.backbone import cache_kwarg, make_mtp_layer, norm_class, rms_eps


class MTPModule(nn.Module):
    def __init__(self, backbone: PreTrainedModel) -> None:
        super().__init__()
        hidden = backbone.config.hidden_size
        eps = rms_eps(backbone.config)
        norm_cls = norm_class(backbone)
        layer, self.layer_config = make_mtp_layer(backbone)
        self.pre_fc_norm_embedding = norm_cls(hidden, eps=eps)
        self.pre_fc_norm_hidden = norm_cls(hidden, eps=eps)
        self.fc = nn.Linear(2 * hidden, hidden, bias=False)
        self.layers = nn.ModuleList([layer])
        self.norm = norm_cls(hidden, eps=eps)
        with torch.no_grad():
            eye = torch.eye(hidden)
            self.fc.weight.copy_(torch.cat([eye, eye], dim=1))  # u = a + b to start
        self._cache_kw = cache_kwarg(layer)

    def new_cache(self) -> DynamicCache:
        return DynamicCache(config=self.layer_config)

    def forward(
        self,
        token_embeds: torch.Tensor,
        hidden: torch.Tensor,
        position_ids: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None,
        cache: Any = None,
    ) -> torch.Tensor:
        fused = torch.cat([self.pre_fc_norm_embedding(token_embeds), self.pre_fc_norm_hidden(hidden)], dim=-1)
        u = self.fc(fused)  # [B, n, 2H] -> [B, n, H]
        out = self.layers[0](
            u,
            attention_mask=attention_mask,
            position_ids=position_ids,
            position_embeddings=position_embeddings,
            use_cache=cache is not None,
            **{self._cache_kw: cache},
        )
        if isinstance(out, tuple):
            out = out[0]
        return self.norm(out)
