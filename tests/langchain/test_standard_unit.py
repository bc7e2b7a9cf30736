"""LangChain's standard unit tests for ChatPIPO, over a scripted backend (nothing is generated here)."""

from typing import Any

import pytest
from langchain_tests.unit_tests import ChatModelUnitTests

from pipo_agent.langchain import ChatPIPO
from pipo_agent.testing import ScriptedBackend


class TestChatPIPOUnit(ChatModelUnitTests):
    pytestmark = pytest.mark.anyio  # runs the suite's unmarked async tests (on asyncio: see conftest)

    @property
    def chat_model_class(self) -> type[ChatPIPO]:
        return ChatPIPO

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"backend": ScriptedBackend([]), "model": "scripted"}

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        params = super().standard_chat_model_params
        del params["api_key"]  # a local backend has no API key, and ChatPIPO rejects unknown arguments
        return params
