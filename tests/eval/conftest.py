"""A tokenizer trained on a few gold conversations, tiny random PIPO / AR models over its vocabulary, and a
scripted decoder that replays fixed assistant turns (for the tool loop's unit tests)."""

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from pipo_agent.backends.decode import DecodeStep, FinishReason, SamplingParams
from pipo_agent.backends.model import PipoConfig, PipoModel, save_pipo
from pipo_agent.backends.model.backbone import build_backbone
from pipo_agent.backends.train.tokenizer import build_tokenizer, save_tokenizer
from pipo_agent.tasks import IM_END, family_names, generate_tasks, solve

VOCAB_SIZE = 300


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and the machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    texts = [solve(task).render() for family in family_names() for task in generate_tasks(family, 3, seed=0)]
    return build_tokenizer(texts, VOCAB_SIZE)


def tiny_backbone(vocab: int) -> dict[str, Any]:
    return dict(
        model_type="qwen3",
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        tie_word_embeddings=False,
        max_position_embeddings=1024,
    )


def make_pipo(tokenizer: PreTrainedTokenizerFast, seed: int = 0, **overrides: Any) -> PipoModel:
    torch.manual_seed(seed)
    config = PipoConfig(
        backbone={**tiny_backbone(len(tokenizer)), **overrides},
        pad_token_id=tokenizer.pad_token_id,
        eos_token_ids=(tokenizer.eos_token_id,),
    )
    return PipoModel(config).eval()


def make_teacher(tokenizer: PreTrainedTokenizerFast, seed: int = 1) -> PreTrainedModel:
    torch.manual_seed(seed)
    return build_backbone(tiny_backbone(len(tokenizer))).eval()


@pytest.fixture
def tiny_pipo(tokenizer: PreTrainedTokenizerFast) -> PipoModel:
    return make_pipo(tokenizer)


@pytest.fixture
def tiny_teacher(tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    return make_teacher(tokenizer)


@pytest.fixture
def checkpoint_dirs(tmp_path: Path, tokenizer: PreTrainedTokenizerFast) -> tuple[Path, Path]:
    """(PIPO dir with tokenizer files, AR teacher dir) on disk, as training writes them."""
    pipo_dir, teacher_dir = tmp_path / "pipo", tmp_path / "teacher"
    save_pipo(make_pipo(tokenizer), pipo_dir)
    save_tokenizer(tokenizer, pipo_dir)
    make_teacher(tokenizer).save_pretrained(teacher_dir)
    return pipo_dir, teacher_dir


class ScriptedDecoder:
    """A scripted test backend: turn i replays `turns[i]`, a list of text pieces. Each piece is encoded on
    its own (so a tag split over pieces arrives as plain characters over several steps) and streamed two
    tokens per step; the last step appends `<|im_end|>`. Prompts are recorded."""

    pad_token_id = None

    def __init__(self, tokenizer: PreTrainedTokenizerFast, turns: Sequence[Sequence[str]]) -> None:
        self.tokenizer = tokenizer
        self.turns = [list(t) for t in turns]
        self.prompts: list[list[int]] = []
        self.eos = tokenizer.convert_tokens_to_ids(IM_END)

    def stream(self, prompt_ids: Sequence[int], params: SamplingParams) -> Iterator[DecodeStep]:
        turn = self.turns[min(len(self.prompts), len(self.turns) - 1)]
        self.prompts.append(list(prompt_ids))
        chunks = []
        for piece in turn:
            ids = list(self.tokenizer(piece, add_special_tokens=False)["input_ids"])
            chunks += [tuple(ids[i : i + 2]) for i in range(0, len(ids), 2)]
        chunks.append((self.eos,))
        return iter([_step(i, chunk, i == len(chunks) - 1) for i, chunk in enumerate(chunks)])


def _step(index: int, slots: tuple[int, ...], last: bool) -> DecodeStep:
    return DecodeStep(
        index=index,
        position=index,
        token1=slots[0],
        draft=slots[1] if len(slots) > 1 else None,
        token2=slots[1] if len(slots) > 1 else None,
        conf=1.0 if len(slots) > 1 else None,
        committed=len(slots) > 1,
        slots=slots,
        logprob1=None,
        logprob2=None,
        finish_reason=FinishReason.STOP if last else None,
        elapsed_s=0.001 * (index + 1),
    )


@pytest.fixture
def scripted(tokenizer: PreTrainedTokenizerFast) -> Any:
    """`scripted(turns)`: a :class:`ScriptedDecoder` over the session tokenizer."""
    return lambda turns: ScriptedDecoder(tokenizer, turns)


@pytest.fixture
def pipo_factory(tokenizer: PreTrainedTokenizerFast) -> Any:
    """`pipo_factory(seed=0, **backbone overrides)`: a tiny random PIPO model over the session tokenizer."""
    return lambda seed=0, **overrides: make_pipo(tokenizer, seed, **overrides)
