"""The byte-level BPE tokenizer: special ids, digit splitting, exact round trips, chat template, saving."""

import statistics
from pathlib import Path
from typing import Any

import pytest
from transformers import PreTrainedTokenizerFast

from pipo_agent.backends.train.tokenizer import CHAT_TEMPLATE, build_tokenizer, load_tokenizer, save_tokenizer
from pipo_agent.tasks import (
    GENERATION_PROMPT,
    SPECIAL_TOKENS,
    generate_mixture,
    generate_tasks,
    render_chat,
    solve,
)
from pipo_agent.tools import CALCULATOR_SCHEMA, LOOKUP_SCHEMA

VOCAB_SIZE = 1024


@pytest.fixture(scope="module")
def conversations() -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    trajectories = [solve(task) for task in generate_mixture(900, seed=0)]
    return [(list(t.messages), list(t.tools)) for t in trajectories]


@pytest.fixture(scope="module")
def tokenizer(
    conversations: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]],
) -> PreTrainedTokenizerFast:
    return build_tokenizer((render_chat(messages, tools) for messages, tools in conversations), VOCAB_SIZE)


def _count(tokenizer: PreTrainedTokenizerFast, text: str) -> int:
    return len(tokenizer(text)["input_ids"])


def test_special_tokens_have_ids_zero_to_nine(tokenizer: PreTrainedTokenizerFast) -> None:
    assert [tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS] == list(range(10))
    assert tokenizer.pad_token == "<|pad|>" and tokenizer.pad_token_id == 0
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == 3
    assert tokenizer.bos_token is None
    assert sorted(tokenizer.all_special_ids) == list(range(10))
    assert len(tokenizer) == VOCAB_SIZE


def test_special_tokens_encode_as_single_ids_and_nothing_is_added(tokenizer: PreTrainedTokenizerFast) -> None:
    ids = tokenizer("<|im_start|>assistant\n<think>\nhi</think><|im_end|>")["input_ids"]
    assert ids[0] == 2 and ids[-1] == 3
    assert 4 in ids and 5 in ids
    plain = tokenizer("hello world", add_special_tokens=True)["input_ids"]
    assert not set(plain) & set(range(10))


def test_every_digit_is_its_own_token(tokenizer: PreTrainedTokenizerFast) -> None:
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("37 * 48 = 1776, x2024y")["input_ids"])
    assert [t for t in tokens if any(c.isdigit() for c in t)] == list("37481776") + list("2024")
    for token in tokenizer.get_vocab():
        if any(c.isdigit() for c in token) and token not in SPECIAL_TOKENS:
            assert len(token) == 1, token


def test_decoding_reproduces_the_text_exactly(
    tokenizer: PreTrainedTokenizerFast, conversations: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]
) -> None:
    texts = [render_chat(messages, tools) for messages, tools in conversations[:200]]
    texts += ["naïve café → 東京 🙂\n\t  spaced  out ", "<|im_start|>x<|im_end|>  <think></think>"]
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.decode(ids, skip_special_tokens=False) == text


def test_chat_template_matches_the_python_renderer(
    tokenizer: PreTrainedTokenizerFast, conversations: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]
) -> None:
    assert tokenizer.chat_template == CHAT_TEMPLATE
    for messages, tools in conversations[:300]:
        for prompt_only in (False, True):
            shown = messages[:2] if prompt_only else messages
            expected = render_chat(shown, tools, add_generation_prompt=prompt_only)
            rendered = tokenizer.apply_chat_template(
                shown, tools=tools or None, add_generation_prompt=prompt_only, tokenize=False
            )
            assert rendered == expected


EDGE_CASES: list[tuple[list[dict[str, Any]], list[dict[str, Any]] | None]] = [
    ([{"role": "user", "content": "hi"}], [CALCULATOR_SCHEMA, LOOKUP_SCHEMA]),
    ([{"role": "user", "content": "hi"}], None),
    ([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}], None),
    (
        [
            {"role": "user", "content": "U"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"type": "function", "function": {"name": "lookup", "arguments": {"item": "pêches"}}},
                    {
                        "type": "function",
                        "function": {"name": "calculator", "arguments": '{"expression": "1+1"}'},
                    },
                ],
            },
            {"role": "tool", "content": "peaches: 5 dollars per kg"},
            {"role": "tool", "content": "2"},
            {"role": "assistant", "reasoning_content": "", "content": "Answer: 2"},
            {"role": "user", "content": "again"},
        ],
        [
            {
                "type": "function",
                "function": {
                    "name": "f",
                    "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {}}},
                },
            }
        ],
    ),
]


@pytest.mark.parametrize(("messages", "tools"), EDGE_CASES)
def test_chat_template_edge_cases(
    tokenizer: PreTrainedTokenizerFast, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> None:
    for prompt in (False, True):
        rendered = tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=prompt, tokenize=False
        )
        assert rendered == render_chat(messages, tools, add_generation_prompt=prompt)


def test_generation_prompt_suffix(tokenizer: PreTrainedTokenizerFast) -> None:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "2+2?"}], add_generation_prompt=True, tokenize=False
    )
    assert text.endswith(GENERATION_PROMPT)
    encoded = tokenizer.apply_chat_template([{"role": "user", "content": "2+2?"}], add_generation_prompt=True)
    suffix = tokenizer(GENERATION_PROMPT)["input_ids"]
    assert encoded["input_ids"][-len(suffix) :] == suffix
    assert suffix[0] == 2 and suffix[-2] == 4  # <|im_start|> ... <think> "\n"


def test_save_and_load_round_trip(tokenizer: PreTrainedTokenizerFast, tmp_path: Path) -> None:
    save_tokenizer(tokenizer, tmp_path / "tok")
    loaded = PreTrainedTokenizerFast.from_pretrained(str(tmp_path / "tok"))
    assert load_tokenizer(tmp_path / "tok").get_vocab() == tokenizer.get_vocab()
    assert loaded.chat_template == CHAT_TEMPLATE
    assert (loaded.pad_token_id, loaded.eos_token_id, loaded.bos_token) == (0, 3, None)
    assert [loaded.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS] == list(range(10))
    text = render_chat(
        [{"role": "user", "content": "How many grams are in 3 pounds?"}], add_generation_prompt=True
    )
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.decode(loaded(text)["input_ids"], skip_special_tokens=False) == text


def test_vocab_size_must_cover_bytes_and_specials() -> None:
    with pytest.raises(ValueError, match="at least 266"):
        build_tokenizer(["abc"], vocab_size=100)


def test_token_lengths_by_family_and_difficulty(tokenizer: PreTrainedTokenizerFast) -> None:
    medians: dict[tuple[str, int], float] = {}
    longest = 0
    for family in ("arithmetic", "conversion", "strings"):
        for difficulty in range(1, 6):
            tasks = generate_tasks(family, 16, seed=4, difficulty_range=(difficulty, difficulty))
            counts = [_count(tokenizer, solve(task).render()) for task in tasks]
            medians[family, difficulty] = statistics.median(counts)
            longest = max(longest, *counts)
    assert medians["strings", 5] > 1500
    assert medians["strings", 1] < 300
    assert longest < 5000
    for family in ("arithmetic", "conversion", "strings"):
        assert medians[family, 5] > medians[family, 1]


def test_most_mixture_tokens_sit_in_trajectories_of_100_to_800_tokens(
    tokenizer: PreTrainedTokenizerFast, conversations: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]
) -> None:
    counts = [_count(tokenizer, render_chat(messages, tools)) for messages, tools in conversations[:400]]
    assert sum(c for c in counts if 100 <= c <= 800) > 0.5 * sum(counts)
    assert min(counts) >= 100
