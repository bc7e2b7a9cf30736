"""Messages: one serializer for a whole history (exact round trip), and the dicts of the chat template."""

import json
import re
from typing import Any

import pytest

from pipo_agent.errors import HistoryFormatError
from pipo_agent.messages import (
    AssistantMessage,
    FinishReason,
    InvalidToolCall,
    Message,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    Usage,
    UserMessage,
    dump_history,
    dump_message,
    load_history,
    load_message,
    new_tool_call_id,
    to_chat_dicts,
)
from pipo_agent.tasks.chat_format import render_chat

HISTORY: list[Message] = [
    SystemMessage(content="You are terse."),
    UserMessage(content="What is 37 * 48, and the weather in Zürich?"),
    AssistantMessage(
        content="Let me compute.",
        reasoning="I need the calculator.",
        tool_calls=[ToolCall(id="call_1", name="calculator", arguments={"expression": "37 * 48"})],
        invalid_tool_calls=[InvalidToolCall(id="call_2", raw='{"name": weather}', error="not JSON")],
        usage=Usage(prompt_tokens=10, completion_tokens=7, reasoning_tokens=3, steps=4, tau=0.5),
        finish_reason=FinishReason.STOP,
    ),
    ToolResultMessage(tool_call_id="call_1", name="calculator", content="1776"),
    ToolResultMessage(tool_call_id="call_2", name=None, content="Error: not JSON", is_error=True),
    AssistantMessage(content="1776; no weather tool.", reasoning=None),
]


def test_history_round_trip_is_exact_through_json() -> None:
    data = dump_history(HISTORY)
    assert load_history(json.loads(json.dumps(data))) == HISTORY
    assert [item["kind"] for item in data] == ["system", "user", "assistant", "tool", "tool", "assistant"]


def test_one_message_round_trip_uses_the_same_schema() -> None:
    for message in HISTORY:
        assert load_message(dump_message(message)) == message
        assert dump_message(message) == dump_history([message])[0]


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ([{"kind": "robot", "content": "x"}], "0"),
        ([{"kind": "user"}], "0.user.content"),
        ([{"kind": "user", "content": "x", "extra": 1}], "0.user.extra"),
        ({"kind": "user", "content": "x"}, "(top level)"),
    ],
)
def test_load_history_rejects_other_data_naming_the_place(data: object, where: str) -> None:
    with pytest.raises(HistoryFormatError, match=f"not a message history: {re.escape(where)}:"):
        load_history(data)


def test_to_chat_dicts_renders_like_a_hand_written_conversation() -> None:
    by_hand: list[dict[str, Any]] = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 37 * 48, and the weather in Zürich?"},
        {
            "role": "assistant",
            "reasoning_content": "I need the calculator.",
            "content": 'Let me compute.\n<tool_call>\n{"name": weather}\n</tool_call>',
            "tool_calls": [{"function": {"name": "calculator", "arguments": {"expression": "37 * 48"}}}],
        },
        {"role": "tool", "content": "1776"},
        {"role": "tool", "content": "Error: not JSON"},
        {"role": "assistant", "content": "1776; no weather tool."},
    ]
    assert render_chat(to_chat_dicts(HISTORY)) == render_chat(by_hand)


def test_assistant_turn_renders_reasoning_then_content_then_calls() -> None:
    [chat] = to_chat_dicts([HISTORY[2]])
    text = render_chat([{"role": "user", "content": "q"}, chat])
    assert text.endswith(
        "<|im_start|>assistant\n<think>\nI need the calculator.\n</think>\nLet me compute.\n"
        '<tool_call>\n{"name": weather}\n</tool_call>\n'
        '<tool_call>\n{"name": "calculator", "arguments": {"expression": "37 * 48"}}\n</tool_call><|im_end|>\n'
    )


def test_usage_adds_up_over_turns() -> None:
    first = Usage(
        prompt_tokens=10, completion_tokens=6, reasoning_tokens=2, steps=3, drafts_proposed=3, tau=0.5
    )
    second = Usage(prompt_tokens=20, completion_tokens=4, steps=2, drafts_committed=1, tau=0.5)
    total = first + second
    assert total == Usage(
        prompt_tokens=30,
        completion_tokens=10,
        reasoning_tokens=2,
        steps=5,
        drafts_proposed=3,
        drafts_committed=1,
        tokens_per_step=2.0,
        tau=0.5,
    )
    assert total.total_tokens == 40
    assert (Usage() + Usage(tau=0.7)).tau is None
    assert (Usage() + Usage()).steps is None


def test_messages_are_immutable_and_ids_unique() -> None:
    message = UserMessage(content="hi")
    with pytest.raises(ValueError, match="frozen"):
        message.content = "bye"  # type: ignore[misc]
    ids = {new_tool_call_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("call_") for i in ids)
