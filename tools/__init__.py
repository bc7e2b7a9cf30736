"""Built-in agent tools.

The exact ``calculator`` and the catalog ``lookup`` are plain functions from their JSON arguments to a
result string, with an OpenAI-style schema constant; they raise a :class:`ToolError` (see
:mod:`pipo_agent.tools.errors`) whose message is meant to be shown to the model. :func:`calculator_tool` and
:func:`lookup_tool` wrap them as agent tools (:class:`pipo_agent.toolset.Tool`).

The other agent tools live in their own modules, so that importing this package stays light:

- :func:`pipo_agent.tools.python_runner.python_runner_tool`: run Python in a limited subprocess,
- :func:`pipo_agent.tools.files.files_tools`: read, list and write files under one root directory,
- :func:`pipo_agent.tools.http_get.http_get_tool`: HTTP GET from an explicit allow-list of hosts.
"""

from typing import TYPE_CHECKING

from .calculator import CALCULATOR_SCHEMA, calculator
from .catalog import LOOKUP_SCHEMA, lookup
from .errors import CalculatorError, ToolError, ToolInputError, UnknownItemError

if TYPE_CHECKING:
    from pipo_agent.toolset import Tool

__all__ = [
    "CALCULATOR_SCHEMA",
    "LOOKUP_SCHEMA",
    "CalculatorError",
    "ToolError",
    "ToolInputError",
    "UnknownItemError",
    "calculator",
    "calculator_tool",
    "lookup",
    "lookup_tool",
]


def calculator_tool() -> "Tool":
    """The calculator as an agent tool; its errors reach the model as ``Error: {message}``."""
    # Imported here: pipo_agent.toolset imports pipo_agent.tasks, which imports this package.
    from pipo_agent.errors import ToolError as AgentToolError
    from pipo_agent.toolset import Tool

    def run(expression: str) -> str:
        """Evaluate an arithmetic expression exactly.

        Args:
            expression: Numbers with + - * / // % ** and parentheses, e.g. '37 * 48'.
        """
        try:
            return calculator(expression)
        except ToolError as exc:
            raise AgentToolError(str(exc)) from exc

    return Tool.from_function(run, name="calculator", timeout=5.0)


def lookup_tool() -> "Tool":
    """The catalog lookup as an agent tool; its errors reach the model as ``Error: {message}``."""
    from pipo_agent.errors import ToolError as AgentToolError
    from pipo_agent.toolset import Tool

    def run(item: str) -> str:
        """Look up a grocery price in dollars or a unit conversion factor.

        Args:
            item: A grocery item such as 'apples', or a conversion 'UNIT in UNIT' such as 'pound in grams'.
        """
        try:
            return lookup(item)
        except ToolError as exc:
            raise AgentToolError(str(exc)) from exc

    return Tool.from_function(run, name="lookup", timeout=5.0)
