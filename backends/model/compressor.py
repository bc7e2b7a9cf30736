"""Compressors ("pair-in"): fold the embeddings of each token pair into one latent.

Input `[..., T, H]` with T even, output `[..., T/2, H]`; latent j sees `[e_{2j}; e_{2j+1}]` in that order.
Both variants start from a neutral map so a backbone trained on single tokens sees sums of familiar
embeddings at first: linear gives `e_a + e_b`, mlp gives `SiLU(e_a) + SiLU(e_b)`.
"""

import torch
from torch import nn

from pipo_agent.backends.model.constants import PAIR
from pipo_agent.backends.model.registry import Registry

COMPRESSORS: Registry[nn.Module] = Registry("compressor type")


def _pairs(embeds: torch.Tensor) -> torch.Tensor:
    *lead, t, h = embeds.shape
    if t % PAIR:
        raise ValueError(f"compressor input length must be a multiple of {PAIR}, got {t}")
    return embeds.reshape(*lead, t // PAIR, PAIR * h)  # [..., T, H] -> [..., T/2, 2H]


def _sum_of_halves(hidden: int) -> torch.Tensor:
    eye = torch.eye(hidden)
    return torch.cat([eye, eye], dim=1)  # [H, 2H] = [I | I]


@COMPRESSORS.register("linear")
class LinearCompressor(nn.Module):
    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(PAIR * hidden_size, hidden_size)
        self.reset_neutral()

    @torch.no_grad()
    def reset_neutral(self) -> None:
        self.linear.weight.copy_(_sum_of_halves(self.linear.out_features))
        self.linear.bias.zero_()

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.linear(_pairs(embeds))


@COMPRESSORS.register("mlp")
class MLPCompressor(nn.Module):
    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(PAIR * hidden_size, PAIR * hidden_size),
            nn.SiLU(),
            nn.Linear(PAIR * hidden_size, hidden_size),
        )
        self.reset_neutral()

    @torch.no_grad()
    def reset_neutral(self) -> None:
        first, last = self.mlp[0], self.mlp[2]
        first.weight.copy_(torch.eye(first.out_features))
        first.bias.zero_()
        last.weight.copy_(_sum_of_halves(last.out_features))
        last.bias.zero_()

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.mlp(_pairs(embeds))


def build_compressor(name: str, hidden_size: int) -> nn.Module:
    return COMPRESSORS.get(name)(hidden_size)
