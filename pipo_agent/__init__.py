"""pipo-agent: an asynchronous chat-agent framework with a PIPO reasoning backend.

The public names below are imported on first use, so ``import pipo_agent`` (and the CLI's start) stays
fast; none of them imports torch. The embedded-engine backend is
:class:`pipo_agent.backends.engine.chat_backend.EngineBackend` (it does import torch).
"""

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Agent": "pipo_agent.agent",
    "AgentConfig": "pipo_agent.agent",
    "Hook": "pipo_agent.run_events",
    "RunEvent": "pipo_agent.run_events",
    "RunResult": "pipo_agent.run_events",
    "RunStream": "pipo_agent.run_events",
    "StopReason": "pipo_agent.run_events",
    "RunOutcome": "pipo_agent.thresholds",
    "ThresholdPolicy": "pipo_agent.thresholds",
    "ChatBackend": "pipo_agent.backend",
    "ChatRequest": "pipo_agent.backend",
    "SamplingSettings": "pipo_agent.backend",
    "AssistantMessage": "pipo_agent.messages",
    "Message": "pipo_agent.messages",
    "SystemMessage": "pipo_agent.messages",
    "ToolCall": "pipo_agent.messages",
    "ToolResultMessage": "pipo_agent.messages",
    "Usage": "pipo_agent.messages",
    "UserMessage": "pipo_agent.messages",
    "Tool": "pipo_agent.toolset",
    "Toolset": "pipo_agent.toolset",
    "tool": "pipo_agent.toolset",
    "AgentUsageError": "pipo_agent.errors",
    "BackendError": "pipo_agent.errors",
    "PipoAgentError": "pipo_agent.errors",
    "ToolError": "pipo_agent.errors",
}

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentUsageError",
    "AssistantMessage",
    "BackendError",
    "ChatBackend",
    "ChatRequest",
    "Hook",
    "Message",
    "PipoAgentError",
    "RunEvent",
    "RunOutcome",
    "RunResult",
    "RunStream",
    "SamplingSettings",
    "StopReason",
    "SystemMessage",
    "ThresholdPolicy",
    "Tool",
    "ToolCall",
    "ToolError",
    "ToolResultMessage",
    "Toolset",
    "Usage",
    "UserMessage",
    "tool",
]

if TYPE_CHECKING:
    from pipo_agent.agent import Agent, AgentConfig
    from pipo_agent.backend import ChatBackend, ChatRequest, SamplingSettings
    from pipo_agent.errors import AgentUsageError, BackendError, PipoAgentError, ToolError
    from pipo_agent.messages import (
        AssistantMessage,
        Message,
        SystemMessage,
        ToolCall,
        ToolResultMessage,
        Usage,
        UserMessage,
    )
    from pipo_agent.run_events import Hook, RunEvent, RunResult, RunStream, StopReason
    from pipo_agent.thresholds import RunOutcome, ThresholdPolicy
    from pipo_agent.toolset import Tool, Toolset, tool


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipo_agent' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return [*globals(), *__all__]
