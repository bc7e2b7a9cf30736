"""LangChain integration: :class:`ChatPIPO` (a chat model) and :class:`AgentRunnable` (the agent as a Runnable).

Needs the ``langchain`` extra (``pip install 'pipo-agent[langchain]'``); the rest of pipo-agent does not.

- :class:`ChatPIPO` is a ``BaseChatModel`` over any pipo-agent backend (by default the embedded PIPO
  model, loaded on first use): reasoning arrives as reasoning content, never mixed into the text;
  ``tool_calls``, ``usage_metadata`` with reasoning tokens, PIPO statistics in ``response_metadata``,
  ``bind_tools``, ``with_structured_output``, per-call ``tau`` and ``task_type``.
- :class:`AgentRunnable` exposes a pipo-agent :class:`~pipo_agent.agent.Agent` (its own tool loop, memory
  and limits) as a ``Runnable`` from a task to the final answer and the run's metadata.
- :func:`from_langchain` / :func:`to_langchain` convert messages both ways.
"""

try:
    import langchain_core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "pipo_agent.langchain needs LangChain (langchain-core); install the extra: pip install 'pipo-agent[langchain]'"
    ) from exc

from pipo_agent.langchain.chat_model import DEFAULT_MODELS, BackendLoop, ChatPIPO
from pipo_agent.langchain.convert import from_langchain, to_ai_message, to_langchain
from pipo_agent.langchain.errors import LoopThreadError, ToolChoiceError
from pipo_agent.langchain.runnable import AgentInput, AgentOutput, AgentRunnable

__all__ = [
    "DEFAULT_MODELS",
    "AgentInput",
    "AgentOutput",
    "AgentRunnable",
    "BackendLoop",
    "ChatPIPO",
    "LoopThreadError",
    "ToolChoiceError",
    "from_langchain",
    "to_ai_message",
    "to_langchain",
]
