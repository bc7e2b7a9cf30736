"""Errors of the LangChain adapter, placed in the framework's tree (:mod:`pipo_agent.errors`).

PipoAgentError
├── AgentUsageError
│   └── LoopThreadError     a blocking call came from the private loop thread it would wait for
└── BackendError
    └── ToolChoiceError     the model made no call that ``tool_choice`` requires, even after re-asking

Misuse of LangChain's own API (an unknown per-call argument, a ``tool_choice`` naming no bound tool, an
unsupported input block) raises ``ValueError`` / ``TypeError``, as LangChain's integrations do. A turn
past ``timeout`` raises the built-in ``TimeoutError``.
"""

from typing import Any

from pipo_agent.errors import AgentUsageError, BackendError

__all__ = ["LoopThreadError", "ToolChoiceError"]


class LoopThreadError(AgentUsageError):
    """A blocking call came from the private event-loop thread it would wait for (a deadlock otherwise)."""


class ToolChoiceError(BackendError):
    """The model did not make the tool call that ``tool_choice`` requires within ``1 + max_retries`` tries.

    ``message`` is the last try (a LangChain ``AIMessage``), so callers can see what the model did instead.
    """

    def __init__(self, text: str, message: Any) -> None:
        super().__init__(text)
        self.message = message
