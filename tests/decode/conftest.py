"""Tiny random-init models for the decoder tests (hidden 32, 2 layers, vocab 64; milliseconds per step)."""

import string
from collections.abc import Callable, Iterator

import pytest
import torch
from transformers import PreTrainedModel

from pipo_agent.backends.model import PipoConfig, PipoModel
from pipo_agent.backends.model.backbone import build_backbone

VOCAB = 64
PAD = 0
ALPHABET = string.ascii_letters + string.digits + "+/"  # one character per token id
assert len(ALPHABET) == VOCAB


def tiny_backbone(max_positions: int = 256) -> dict[str, object]:
    return dict(
        model_type="qwen3",
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        # Untied: a tiny tied model collapses to repeating one token, which would hide ordering bugs.
        tie_word_embeddings=False,
        max_position_embeddings=max_positions,
    )


def make_pipo(
    *, head: str = "hm", eos: tuple[int, ...] = (), max_positions: int = 256, seed: int = 0
) -> PipoModel:
    """The same weights for the same seed, whatever `eos` is, so tests can pick EOS ids from a first run."""
    torch.manual_seed(seed)
    config = PipoConfig(
        backbone=tiny_backbone(max_positions), pad_token_id=PAD, eos_token_ids=eos, confidence_head=head
    )
    return PipoModel(config).eval()


def make_ar(*, max_positions: int = 256, seed: int = 0) -> PreTrainedModel:
    torch.manual_seed(seed)
    return build_backbone(tiny_backbone(max_positions)).eval()


def detokenize(ids: list[int]) -> str:
    return "".join(ALPHABET[i] for i in ids)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a loaded 2-core machine the thread pool's
    contention made this directory 15x slower (5 s -> 74 s); restored afterwards for other tests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def pipo_factory() -> Callable[..., PipoModel]:
    return make_pipo


@pytest.fixture
def toy_detokenize() -> Callable[[list[int]], str]:
    return detokenize


@pytest.fixture
def ar_factory() -> Callable[..., PreTrainedModel]:
    return make_ar
