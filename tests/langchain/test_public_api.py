"""The adapter's public names exist; LangChain stays optional; torch loads only when a default model runs."""

import importlib
import subprocess
import sys

import pytest

MODULES = [
    "pipo_agent.langchain",
    "pipo_agent.langchain.chat_model",
    "pipo_agent.langchain.runnable",
    "pipo_agent.langchain.convert",
    "pipo_agent.langchain.errors",
]

WITHOUT_LANGCHAIN = """
import sys
sys.modules["langchain_core"] = None  # as if langchain-core were not installed
import pipo_agent, pipo_agent.agent, pipo_agent.backend, pipo_agent.messages, pipo_agent.testing
try:
    import pipo_agent.langchain
except ImportError as exc:
    print("ImportError:", exc)
"""


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    assert not [item for item in module.__all__ if not hasattr(module, item)]


def test_pipo_agent_imports_without_langchain_and_the_adapter_names_the_extra() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_LANGCHAIN], capture_output=True, text=True, timeout=120, check=True
    )
    assert "ImportError:" in done.stdout and "pip install 'pipo-agent[langchain]'" in done.stdout


def test_the_adapter_does_not_import_torch_until_a_default_model_runs() -> None:
    code = (
        "import sys; from pipo_agent.langchain import ChatPIPO, AgentRunnable; ChatPIPO(); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
