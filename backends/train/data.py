"""Turn generated conversations into token sequences.

- `conversation_sequence`: the whole conversation tokenized once, labels on every assistant response
  (from the reasoning through `<|im_end|>`) — what the AR teacher trains on.
- `conversation_turns`: one (prompt, response) pair per assistant turn, the prompt being the rendered
  history with the generation prefix — exactly what a decoder sees when an agent asks for that turn.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from pipo_agent.backends.model.constants import IGNORE_INDEX

END_OF_TURN = "<|im_end|>"


@dataclass(frozen=True)
class TurnSample:
    prompt_ids: list[int]
    response_ids: list[int]


def render(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict[str, Any]], tools: Any, gen: bool
) -> str:
    return str(
        tokenizer.apply_chat_template(
            list(messages), tools=tools or None, add_generation_prompt=gen, tokenize=False
        )
    )


def _response_spans(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict[str, Any]], tools: Any
) -> Iterator[tuple[int, str, str]]:
    """(index, prompt text, response text) for every assistant message."""
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        prompt = render(tokenizer, messages[:i], tools, gen=True)
        full = render(tokenizer, messages[: i + 1], tools, gen=False)
        if not full.startswith(prompt):
            raise ValueError("chat template is not prefix-consistent; cannot align assistant turns")
        response = full[len(prompt) :]
        end = response.find(END_OF_TURN)
        if end < 0:
            raise ValueError("rendered assistant turn has no end-of-turn token")
        yield i, prompt, response[: end + len(END_OF_TURN)]


def encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def conversation_turns(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict[str, Any]], tools: Any = None
) -> list[TurnSample]:
    return [
        TurnSample(encode(tokenizer, prompt), encode(tokenizer, response))
        for _, prompt, response in _response_spans(tokenizer, messages, tools)
    ]


def conversation_sequence(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict[str, Any]], tools: Any = None
) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of a whole conversation; built turn by turn so that every assistant response is
    tokenized exactly as it would be generated (on its own, after its prompt)."""
    ids: list[int] = []
    labels: list[int] = []
    consumed = ""
    for _, prompt, response in _response_spans(tokenizer, messages, tools):
        gap = encode(tokenizer, prompt[len(consumed) :])
        resp = encode(tokenizer, response)
        ids += gap + resp
        labels += [IGNORE_INDEX] * len(gap) + resp
        consumed = prompt + response
    return ids, labels
