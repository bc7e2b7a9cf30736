"""The agent's public names exist, and importing them (or the package) never pulls in torch or the SQL store."""

import importlib
import subprocess
import sys

import pytest

import pipo_agent

MODULES = ["pipo_agent.agent", "pipo_agent.run_events", "pipo_agent.run_store", "pipo_agent.thresholds"]


@pytest.mark.parametrize("name", [*MODULES, "pipo_agent"])
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    missing = [item for item in module.__all__ if not hasattr(module, item)]
    assert not missing


def test_package_exports_are_the_modules_objects() -> None:
    from pipo_agent.agent import Agent
    from pipo_agent.run_events import RunResult

    assert pipo_agent.Agent is Agent and pipo_agent.RunResult is RunResult
    assert sorted(pipo_agent.__all__) == sorted(pipo_agent._EXPORTS)
    with pytest.raises(AttributeError, match="nope"):
        _ = pipo_agent.nope  # type: ignore[attr-defined]


def test_the_agent_imports_neither_torch_nor_the_store() -> None:
    code = (
        "import pipo_agent; pipo_agent.Agent; pipo_agent.ThresholdPolicy; "
        + "; ".join(f"import {name}" for name in MODULES)
        + "; import sys; bad = {'torch', 'sqlalchemy'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
