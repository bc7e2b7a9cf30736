"""Errors of the built-in tools.

ToolError                 base; the message is written for the model and is safe to show it
└── ToolInputError        the arguments the model sent are invalid (the agent reports the message back)
    ├── CalculatorError   an expression outside the calculator's language or limits
    └── UnknownItemError  a lookup for an item the catalog does not hold; carries close matches

These are runtime failures of a tool call, not programming errors: an agent loop catches ``ToolError`` and
sends ``str(exc)`` to the model as the tool's response.
"""


class ToolError(Exception):
    """Base class of tool failures; ``str(exc)`` is meant for the model."""


class ToolInputError(ToolError, ValueError):
    """The tool's arguments are invalid."""


class CalculatorError(ToolInputError):
    """The expression cannot be evaluated: unsupported syntax, division by zero or a result too large."""


class UnknownItemError(ToolInputError):
    """The catalog holds no such item; ``suggestions`` lists the closest known names."""

    def __init__(self, message: str, suggestions: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.suggestions = suggestions
