"""``examples/langchain_agent.py`` runs: LangChain's ``create_agent`` drives ChatPIPO on the real default model.

Mechanics only (the graph runs, each tool call gets its tool message, reasoning stays out of the text), not
whether the small model's arithmetic is right.
"""

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from pipo_agent.langchain import ChatPIPO

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langchain_agent.py"


@pytest.fixture(scope="module", autouse=True)
def stop_the_default_engine() -> Iterator[None]:
    yield
    ChatPIPO().close()


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("langchain_agent_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def check_conversation(messages: list[BaseMessage], question: str) -> None:
    assert isinstance(messages[0], HumanMessage) and messages[0].content == question
    replies = [m for m in messages if isinstance(m, AIMessage)]
    assert replies, "the model never answered"
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    for reply in replies:
        assert all(call["id"] in answered for call in reply.tool_calls), "a tool call got no tool message"
        assert "</think>" not in reply.text and "<tool_call>" not in reply.text
        assert reply.response_metadata["model_name"] == "pipo-default"
        assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] > 0


def test_the_example_agent_runs_on_the_default_model(example: ModuleType) -> None:
    question = "What is 12*7? Use the calculator."
    messages = example.run(question)
    check_conversation(messages, question)
    calls = [call for m in messages if isinstance(m, AIMessage) for call in m.tool_calls]
    final = messages[-1]
    # Either the graph ran tools for the model's calls, or the model answered without any.
    assert calls or (isinstance(final, AIMessage) and not final.tool_calls)


@pytest.mark.anyio
async def test_the_example_agent_runs_async(example: ModuleType) -> None:
    question = "What is 12*7? Use the calculator."
    check_conversation(await example.arun(question), question)


def test_the_example_prints_a_conversation(example: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    example.main(["langchain_agent.py"])
    out = capsys.readouterr().out
    assert "[human] What is 12*7?" in out and "[thinking]" in out and "[ai]" in out
