"""Tiny random-init backbones (hidden 32, vocab 64) shared by the model tests.

Every factory seeds its own generator, so a test gets the same weights whenever it asks twice.
"""

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from pipo_agent.backends.model import PipoConfig, PipoModel

VOCAB = 64
HIDDEN = 32
PAD_ID = 1

_COMMON: dict[str, Any] = {
    "vocab_size": VOCAB,
    "hidden_size": HIDDEN,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}

# One tied and one untied dense backbone, plus the hybrid Qwen3.5 (layers: linear, full, linear, full).
TINY_BACKBONES: dict[str, dict[str, Any]] = {
    "llama": {"model_type": "llama", "num_hidden_layers": 2, "tie_word_embeddings": False},
    "qwen2": {"model_type": "qwen2", "num_hidden_layers": 2},
    "qwen3": {"model_type": "qwen3", "num_hidden_layers": 2, "head_dim": 8, "tie_word_embeddings": True},
    "qwen3_5_text": {
        "model_type": "qwen3_5_text",
        "num_hidden_layers": 4,
        "head_dim": 8,
        "linear_num_key_heads": 2,
        "linear_num_value_heads": 4,
        "linear_key_head_dim": 8,
        "linear_value_head_dim": 8,
        "full_attention_interval": 2,
        "tie_word_embeddings": True,
    },
}
BACKBONE_NAMES = tuple(TINY_BACKBONES)


def tiny_backbone(name: str, **overrides: Any) -> dict[str, Any]:
    return {**_COMMON, **TINY_BACKBONES[name], **overrides}


@torch.no_grad()
def perturb(module: nn.Module, seed: int = 0, scale: float = 0.1) -> nn.Module:
    """Add noise to every parameter, so neutral inits (identity compressor, zero norms, zero fc2) cannot
    hide a weight that failed to load or a formula that ignores it."""
    gen = torch.Generator().manual_seed(seed)
    for param in module.parameters():  # tied parameters are listed once
        param.add_(torch.randn(param.shape, generator=gen).to(param.dtype) * scale)
    return module


def make_pipo(name: str, seed: int = 0, **fields: Any) -> PipoModel:
    torch.manual_seed(seed)
    config = PipoConfig(backbone=tiny_backbone(name), pad_token_id=PAD_ID, **fields)
    model = PipoModel(config)
    perturb(model, seed)
    return model.eval()


def random_ids(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(2, VOCAB, (batch, length), generator=gen)


@pytest.fixture(params=BACKBONE_NAMES)
def backbone_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def tiny() -> Callable[..., dict[str, Any]]:
    """`tiny(name, **overrides)`: the Hugging Face config dict of a tiny backbone."""
    return tiny_backbone


@pytest.fixture
def pipo() -> Callable[..., PipoModel]:
    """`pipo(name, seed=0, **PipoConfig fields)`: an eval-mode PIPO model with every weight perturbed."""
    return make_pipo


@pytest.fixture
def noisy() -> Callable[..., nn.Module]:
    """`noisy(module, seed=0, scale=0.1)`: perturb every parameter in place."""
    return perturb


@pytest.fixture
def ids() -> Callable[..., torch.Tensor]:
    """`ids(batch, length, seed=0)`: random token ids that avoid the pad id."""
    return random_ids
