"""LangChain's standard integration tests for ChatPIPO over a scripted backend that does what it is asked.

The real default model fails the tool-calling and JSON tests (see ``test_standard_integration.py``): it is
too small to follow instructions. This run shows those failures are the model's, not the adapter's: over
:class:`ObedientBackend`, a test double that reads the request (the tools shown, the instruction ChatPIPO
adds for ``tool_choice`` / ``response_format``, the numbers and quoted names in the question) and writes
the raw PIPO-format turn a capable model would, the whole standard suite passes. Its turns go through the
real stream parser, like the engine's. A ChatPIPO given a backend serves that one model, so the
model-override tests are switched off with the suite's flag.
"""

import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests

from pipo_agent.backend import ChatBackend, ChatRequest, StreamEvent
from pipo_agent.langchain import ChatPIPO
from pipo_agent.messages import SystemMessage, ToolResultMessage, UserMessage
from pipo_agent.testing import ScriptedBackend

from .conftest import call, turn

_SCHEMA = re.compile(r"It must match this JSON schema: (\{.*\})", re.DOTALL)
_NAMED = re.compile(r"you must call the tool (\S+)\.")


class ObedientBackend(ChatBackend):
    """A test double that answers each request as instructed (see the module docstring)."""

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        async for event in ScriptedBackend([self._answer(request)], chunk_size=2).stream(request):
            yield event

    def _answer(self, request: ChatRequest) -> str:
        system = " ".join(m.content for m in request.messages if isinstance(m, SystemMessage))
        question = next((m.content for m in reversed(request.messages) if isinstance(m, UserMessage)), "")
        if "Answer with one JSON object" in system:
            return turn("The user wants JSON.", json.dumps(_object(system, question), ensure_ascii=False))
        answered = isinstance(request.messages[-1], ToolResultMessage)
        forced = "you must call" in system
        if request.tools and (forced or not answered):
            named = _NAMED.search(system)
            name = named.group(1) if named else request.tools[0]["function"]["name"]
            tool = next(t["function"] for t in request.tools if t["function"]["name"] == name)
            return turn(
                f"I call {name}.", "", call(name, **_arguments(tool.get("parameters") or {}, question))
            )
        return turn("A greeting needs no tools.", "Hello! How can I help?")


def _arguments(parameters: dict[str, Any], question: str) -> dict[str, Any]:
    """Values for the required arguments from the question: its integers in order, else 3; its first
    quoted phrase, else the question itself."""
    numbers = [int(n) for n in re.findall(r"-?\d+", question)]
    quoted = re.findall(r"'([^']+)'", question)
    args: dict[str, Any] = {}
    for name in parameters.get("required") or []:
        kind = (parameters.get("properties") or {}).get(name, {}).get("type")
        args[name] = (
            (numbers.pop(0) if numbers else 3) if kind == "integer" else (quoted[0] if quoted else question)
        )
    return args


def _object(system: str, question: str) -> dict[str, Any]:
    match = _SCHEMA.search(system)
    keys = list(json.loads(match.group(1))["properties"]) if match else re.findall(r"'(\w+)'", question)
    return {key: f"a {key} about cats" for key in keys}


BACKEND = ObedientBackend()  # one for the module: each ChatPIPO over it shares one private loop


@pytest.fixture(scope="module", autouse=True)
def stop_the_backend() -> Iterator[None]:
    yield
    ChatPIPO(backend=BACKEND).close()


class TestChatPIPOObedient(ChatModelIntegrationTests):
    pytestmark = pytest.mark.anyio  # runs the suite's unmarked async tests (on asyncio: see conftest)

    @property
    def chat_model_class(self) -> type[ChatPIPO]:
        return ChatPIPO

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"backend": BACKEND, "model": "obedient", "max_retries": 0}

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return False

    @property
    def supported_usage_metadata_details(self) -> dict[Any, list[Any]]:
        return {"invoke": ["reasoning_output"], "stream": ["reasoning_output"]}

    def invoke_with_reasoning_output(self, *, stream: bool = False) -> Any:
        model = ChatPIPO(**self.chat_model_params)
        if not stream:
            return model.invoke("What is 3+4?")
        full = None
        for chunk in model.stream("What is 3+4?"):
            full = chunk if full is None else full + chunk
        return full
