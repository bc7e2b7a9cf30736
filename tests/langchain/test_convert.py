"""Messages both ways between LangChain and pipo-agent."""

import pytest
from langchain_core.messages import AIMessage, ChatMessage, HumanMessage, SystemMessage, ToolMessage

from pipo_agent.langchain import from_langchain, to_langchain
from pipo_agent.messages import (
    AssistantMessage,
    InvalidToolCall,
    ToolCall,
    ToolResultMessage,
    UserMessage,
)
from pipo_agent.messages import SystemMessage as PipoSystem

HISTORY = [
    PipoSystem(content="sys"),
    UserMessage(content="q"),
    AssistantMessage(
        content="calling",
        reasoning="why",
        tool_calls=[ToolCall(id="c1", name="calc", arguments={"x": "1+2"})],
        invalid_tool_calls=[InvalidToolCall(id="c2", raw="{bad", error="not JSON", name=None)],
    ),
    ToolResultMessage(tool_call_id="c1", name="calc", content="3"),
    ToolResultMessage(tool_call_id="c2", name=None, content="Error: not JSON", is_error=True),
    AssistantMessage(content="3", reasoning="done"),
]


def test_a_history_round_trips() -> None:
    converted = to_langchain(HISTORY)
    assert [m.type for m in converted] == ["system", "human", "ai", "tool", "tool", "ai"]
    ai = converted[2]
    assert isinstance(ai, AIMessage) and ai.additional_kwargs == {"reasoning_content": "why"}
    assert ai.invalid_tool_calls[0]["error"] == "not JSON"
    assert converted[4].status == "error"  # type: ignore[attr-defined]
    assert from_langchain(converted) == HISTORY


def test_what_langchain_histories_carry_is_read() -> None:
    history = [
        HumanMessage([{"type": "text", "text": "a"}, "b"], name="ignored"),
        AIMessage(
            [
                {"type": "reasoning", "reasoning": "think"},
                {"type": "text", "text": "ans"},
                {"type": "tool_use", "id": "t", "name": "f", "input": {}},
            ],
            tool_calls=[{"name": "f", "args": {}, "id": "t", "type": "tool_call"}],
        ),
        ToolMessage([{"type": "text", "text": "ok"}], tool_call_id="t"),
        ChatMessage(content="note", role="system"),
        AIMessage([{"type": "thinking", "thinking": "hmm"}]),
    ]
    user, assistant, result, system, thinking = from_langchain(history)
    assert user == UserMessage(content="ab")
    assert assistant == AssistantMessage(
        content="ans", reasoning="think", tool_calls=[ToolCall(id="t", name="f", arguments={})]
    )
    assert result == ToolResultMessage(tool_call_id="t", name="f", content="ok")  # name from the call
    assert system == PipoSystem(content="note")
    assert thinking == AssistantMessage(reasoning="hmm")


def test_what_the_model_cannot_read_is_refused() -> None:
    with pytest.raises(ValueError, match="image"):
        from_langchain([HumanMessage([{"type": "image", "base64": "AAAA", "mime_type": "image/png"}])])
    with pytest.raises(ValueError, match="role 'critic'"):
        from_langchain([ChatMessage(content="x", role="critic")])
    assert from_langchain([SystemMessage("s")]) == [PipoSystem(content="s")]
