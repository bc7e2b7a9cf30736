"""Conversations to token sequences, on real generated tasks and a tokenizer built by `build_tokenizer`:
prompts end with the generation prefix, responses end with `<|im_end|>`, and the whole-conversation labels
cover exactly the assistant responses."""

from typing import Any

import pytest
from transformers import PreTrainedTokenizerFast

from pipo_agent.backends.model.constants import IGNORE_INDEX
from pipo_agent.backends.train.data import conversation_sequence, conversation_turns
from pipo_agent.backends.train.tokenizer import build_tokenizer
from pipo_agent.tasks import GENERATION_PROMPT, IM_END, generate_tasks, render_chat, solve

Conversation = tuple[list[dict[str, Any]], list[dict[str, Any]]]


@pytest.fixture(scope="module")
def conversations() -> list[Conversation]:
    out = []
    for family in ("arithmetic", "conversion", "strings"):
        for task in generate_tasks(family, 3, seed=0, difficulty_range=(1, 2)):
            trajectory = solve(task)
            out.append(([dict(m) for m in trajectory.messages], [dict(t) for t in trajectory.tools]))
    return out


@pytest.fixture(scope="module")
def tokenizer(conversations: list[Conversation]) -> PreTrainedTokenizerFast:
    return build_tokenizer([render_chat(m, t) for m, t in conversations], vocab_size=300)


def _runs(labels: list[int]) -> list[tuple[int, int]]:
    """[start, end) of every maximal run of supervised labels."""
    runs, start = [], None
    for i, label in enumerate([*labels, IGNORE_INDEX]):
        if label != IGNORE_INDEX and start is None:
            start = i
        elif label == IGNORE_INDEX and start is not None:
            runs.append((start, i))
            start = None
    return runs


def test_turns_end_with_the_generation_prefix_and_the_end_of_turn(
    tokenizer: PreTrainedTokenizerFast, conversations: list[Conversation]
) -> None:
    prefix = tokenizer(GENERATION_PROMPT, add_special_tokens=False)["input_ids"]
    eos = tokenizer.convert_tokens_to_ids(IM_END)
    assert prefix[0] == tokenizer.convert_tokens_to_ids("<|im_start|>") and prefix[-2] == 4  # ... <think> \n
    multi_turn = 0
    for messages, tools in conversations:
        turns = conversation_turns(tokenizer, messages, tools)
        assistant = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        assert len(turns) == len(assistant)
        multi_turn += len(turns) > 1
        for turn, index in zip(turns, assistant, strict=True):
            assert turn.prompt_ids[-len(prefix) :] == prefix
            assert turn.response_ids[-1] == eos and turn.response_ids.count(eos) == 1
            # prompt + response is the rendered history through this assistant turn (its "\n" aside).
            text = tokenizer.decode(turn.prompt_ids + turn.response_ids, skip_special_tokens=False)
            assert text + "\n" == render_chat(messages[: index + 1], tools)
            assert tokenizer.decode(turn.prompt_ids, skip_special_tokens=False) == render_chat(
                messages[:index], tools, add_generation_prompt=True
            )
    assert multi_turn >= 3  # tool-using tasks: several assistant turns per conversation


def test_sequence_labels_cover_exactly_the_assistant_responses(
    tokenizer: PreTrainedTokenizerFast, conversations: list[Conversation]
) -> None:
    for messages, tools in conversations:
        ids, labels = conversation_sequence(tokenizer, messages, tools)
        assert len(ids) == len(labels)
        assert tokenizer.decode(ids, skip_special_tokens=False) + "\n" == render_chat(messages, tools)
        turns = conversation_turns(tokenizer, messages, tools)
        runs = _runs(labels)
        assert len(runs) == len(turns)
        for (start, end), turn in zip(runs, turns, strict=True):
            # Each response is tokenized as it would be generated, after the history up to its prompt.
            assert ids[start:end] == labels[start:end] == turn.response_ids
            assert tokenizer.decode(ids[:start], skip_special_tokens=False).endswith(GENERATION_PROMPT)
        supervised = sum(end - start for start, end in runs)
        assert supervised == sum(label != IGNORE_INDEX for label in labels)
        assert labels[-1] != IGNORE_INDEX  # the conversation ends on the last response's <|im_end|>
