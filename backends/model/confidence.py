"""Confidence heads: decide whether the MTP draft (token2) is committed.

- `hm` (published): sees the backbone hidden h and the MTP hidden m only, so with a BCE target it can
  learn the *expected* acceptance at a position, not the acceptance of the drafted token.
- `token` (token-aware): also sees the drafted token's embedding and its MTP log-probability, so the
  gate can tell a confident draft from an unlucky sample at the same position.

Both return a raw logit `[...]`; `sigmoid(logit) >= tau` commits the draft.
"""

import torch
from torch import nn

from pipo_agent.backends.model.norm import OffsetRMSNorm
from pipo_agent.backends.model.registry import Registry

CONFIDENCE_HEADS: Registry[nn.Module] = Registry("confidence head")


@CONFIDENCE_HEADS.register("hm")
class HiddenConfidenceHead(nn.Module):
    uses_draft = False

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = OffsetRMSNorm(2 * hidden_size, eps)
        self.fc1 = nn.Linear(2 * hidden_size, hidden_size, bias=False)
        self.fc2 = nn.Linear(hidden_size, 1, bias=False)

    def forward(
        self,
        h: torch.Tensor,
        m: torch.Tensor,
        draft_embeds: torch.Tensor | None = None,
        draft_logprobs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.norm(torch.cat([h, m], dim=-1))  # [..., 2H]
        return self.fc2(nn.functional.silu(self.fc1(x))).squeeze(-1)


@CONFIDENCE_HEADS.register("token")
class TokenAwareConfidenceHead(nn.Module):
    uses_draft = True

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = OffsetRMSNorm(3 * hidden_size, eps)
        self.fc1 = nn.Linear(3 * hidden_size, hidden_size, bias=False)
        # The draft's MTP probability enters as its logit, logit(p) = log p - log(1 - p), both as a feature
        # and as a skip connection initialised to 1, so the untrained head already reads "commit iff p >= tau".
        self.logprob_proj = nn.Linear(1, hidden_size)
        self.fc2 = nn.Linear(hidden_size, 1, bias=False)
        self.logprob_scale = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))
        nn.init.zeros_(self.fc2.weight)

    def forward(
        self,
        h: torch.Tensor,
        m: torch.Tensor,
        draft_embeds: torch.Tensor | None = None,
        draft_logprobs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if draft_embeds is None or draft_logprobs is None:
            raise ValueError("the token-aware confidence head needs the draft's embedding and log-prob")
        x = self.norm(torch.cat([h, m, draft_embeds], dim=-1))  # [..., 3H]
        lp = draft_logprobs.float().clamp(max=-1e-6)
        p_logit = (lp - torch.log(-torch.expm1(lp))).clamp(-20.0, 20.0).unsqueeze(-1).to(x.dtype)  # [..., 1]
        hidden = nn.functional.silu(self.fc1(x) + self.logprob_proj(p_logit))
        return self.fc2(hidden).squeeze(-1) + self.logprob_scale * p_logit.squeeze(-1) + self.bias


def build_confidence_head(name: str, hidden_size: int, eps: float = 1e-6) -> nn.Module:
    return CONFIDENCE_HEADS.get(name)(hidden_size, eps)
