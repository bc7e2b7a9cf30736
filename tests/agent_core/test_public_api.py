"""The agent core's public names exist, and importing it never pulls in torch."""

import importlib
import subprocess
import sys

import pytest

import pipo_agent.errors as errors

MODULES = [
    "pipo_agent.messages",
    "pipo_agent.backend",
    "pipo_agent.chat_format",
    "pipo_agent.toolset",
    "pipo_agent.testing",
    "pipo_agent.tools.python_runner",
    "pipo_agent.tools.files",
    "pipo_agent.tools.http_get",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    missing = [item for item in module.__all__ if not hasattr(module, item)]
    assert not missing


def test_the_agent_core_does_not_import_torch() -> None:
    imports = "; ".join(f"import {name}" for name in [*MODULES, "pipo_agent.tools", "pipo_agent.errors"])
    code = f"{imports}; import sys; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("first", ["pipo_agent.toolset", "pipo_agent.tools", "pipo_agent.tasks"])
def test_any_import_order_works(first: str) -> None:
    code = f"import {first}; import pipo_agent.tools.files, pipo_agent.toolset, pipo_agent.tools"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_error_hierarchy_matches_the_docstring() -> None:
    assert errors.__doc__ is not None
    for name in ("ToolDefinitionError", "ToolConfigError", "HistoryFormatError", "ScriptExhaustedError"):
        assert name in errors.__doc__
    assert issubclass(errors.ToolDefinitionError, errors.AgentUsageError)
    assert issubclass(errors.ToolDefinitionError, TypeError)
    assert issubclass(errors.HistoryFormatError, ValueError)
    assert issubclass(errors.ScriptExhaustedError, errors.BackendError)
    assert issubclass(errors.HostNotAllowedError, errors.FetchError)
    for tool_error in (errors.ToolTimeoutError, errors.PathAccessError, errors.FetchError):
        assert issubclass(tool_error, errors.ToolError)
    for base in (errors.AgentUsageError, errors.BackendError, errors.ToolError):
        assert issubclass(base, errors.PipoAgentError)
