"""Built-in agent tools: an exact ``calculator`` and a catalog ``lookup``.

Each tool is a plain function from its JSON arguments to a result string, with an OpenAI-style schema
constant. A tool raises a :class:`ToolError` (see :mod:`pipo_agent.tools.errors`) whose message is meant to
be shown to the model.
"""

from .calculator import CALCULATOR_SCHEMA, calculator
from .catalog import LOOKUP_SCHEMA, lookup
from .errors import CalculatorError, ToolError, ToolInputError, UnknownItemError

__all__ = [
    "CALCULATOR_SCHEMA",
    "LOOKUP_SCHEMA",
    "CalculatorError",
    "ToolError",
    "ToolInputError",
    "UnknownItemError",
    "calculator",
    "lookup",
]
