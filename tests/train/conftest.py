"""Tiny random-init models for the training tests (hidden 32, 2 layers, vocab 64; milliseconds per forward).

Every factory seeds its own generator, so a test gets the same weights whenever it asks twice.
"""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn
from transformers import PreTrainedModel

from pipo_agent.backends.model import PipoConfig, PipoModel
from pipo_agent.backends.model.backbone import build_backbone

VOCAB = 64
PAD = 1


def tiny_backbone(**overrides: Any) -> dict[str, Any]:
    return {
        "model_type": "qwen3",
        "vocab_size": VOCAB,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        # Untied, so freezing the embeddings does not also freeze the LM head by accident.
        "tie_word_embeddings": False,
        "max_position_embeddings": 256,
        **overrides,
    }


@torch.no_grad()
def perturb(module: nn.Module, seed: int = 0, scale: float = 0.1) -> nn.Module:
    """Noise on every parameter, so neutral inits (identity compressor, zero-offset norms) hide nothing."""
    gen = torch.Generator().manual_seed(seed)
    for param in module.parameters():
        param.add_(torch.randn(param.shape, generator=gen) * scale)
    return module


def make_pipo(seed: int = 0, **fields: Any) -> PipoModel:
    torch.manual_seed(seed)
    model = PipoModel(PipoConfig(backbone=tiny_backbone(), pad_token_id=PAD, **fields))
    perturb(model, seed)
    return model.eval()


def make_teacher(seed: int = 1) -> PreTrainedModel:
    torch.manual_seed(seed)
    return build_backbone(tiny_backbone()).eval()


@pytest.fixture(autouse=True, scope="session")
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and the machine's cores may be busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def pipo() -> Callable[..., PipoModel]:
    """`pipo(seed=0, **PipoConfig fields)`: an eval-mode tiny PIPO model with every weight perturbed."""
    return make_pipo


@pytest.fixture
def teacher() -> Callable[..., PreTrainedModel]:
    """`teacher(seed=1)`: a tiny eval-mode Qwen3 causal LM with the PIPO model's vocabulary."""
    return make_teacher


@pytest.fixture
def random_ids() -> Callable[..., torch.Tensor]:
    """`random_ids(batch, length, seed=0)`: token ids in [2, VOCAB), never the pad id."""

    def make(batch: int, length: int, seed: int = 0) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.randint(2, VOCAB, (batch, length), generator=gen)

    return make
