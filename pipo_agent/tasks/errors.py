"""Errors of the tasks package.

TaskError
├── TaskSpecError          misuse, raised early: a bad difficulty, count or seed, or a malformed task
│   └── UnknownFamilyError a family name that is not registered; the message lists the valid names
├── ChatFormatError        a message or tool schema that the chat format cannot render
└── SolverError            a gold solver disagrees with a real tool's output (an internal inconsistency)
"""


class TaskError(Exception):
    """Base class of the tasks package's errors."""


class TaskSpecError(TaskError, ValueError):
    """A task request or a task is invalid; raised before any work is done."""


class UnknownFamilyError(TaskSpecError, LookupError):
    """A family name is not registered; the message lists the valid names."""


class ChatFormatError(TaskError, ValueError):
    """A conversation cannot be rendered: unknown role, non-string content or a malformed tool call."""


class SolverError(TaskError, RuntimeError):
    """A gold solver got a tool result that disagrees with the task's own answer."""
