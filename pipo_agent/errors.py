"""Errors of the agent framework (messages, backends, tools).

PipoAgentError                   base of everything raised here
├── AgentUsageError              misuse of the API, raised early (before a run starts)
│   ├── ToolDefinitionError      a function cannot become a tool, or two tools share a name (also TypeError)
│   ├── ToolConfigError          a built-in tool factory got an unusable setting (also ValueError)
│   └── HistoryFormatError       data given to ``load_history`` is not a serialized history (also ValueError)
├── BackendError                 a backend failed to produce a turn (runtime)
│   └── ScriptExhaustedError     the scripted test backend was asked for more turns than it holds
└── ToolError                    a tool call failed at run time; ``str(exc)`` is written for the model
    ├── ToolTimeoutError         the work ran past its time limit
    ├── PathAccessError          a file tool was asked for a path outside its root, missing or too large
    └── FetchError               an HTTP fetch was refused (scheme, host, redirect) or failed
        └── HostNotAllowedError  the URL's host (or a redirect's) is not on the allow-list

Runtime failures of tools never escape :meth:`pipo_agent.toolset.Toolset.call`: it turns them into an error
``ToolResultMessage`` that the model reads (``ToolError`` as ``Error: {message}``, any other exception with
its type name). Model output is never a reason to raise either: malformed tool calls are reported as
``InvalidToolCall`` values. The older :mod:`pipo_agent.tools.errors` hierarchy (calculator, catalog) is mapped
onto :class:`ToolError` where those tools are wrapped as agent tools.
"""


class PipoAgentError(Exception):
    """Base class of the agent framework's errors."""


class AgentUsageError(PipoAgentError):
    """The API was used wrongly; raised early, before any model or tool runs."""


class ToolDefinitionError(AgentUsageError, TypeError):
    """A function cannot become a tool (missing annotations, ``*args``), or tool names collide."""


class ToolConfigError(AgentUsageError, ValueError):
    """A built-in tool factory got an unusable setting (a missing root, an empty allow-list, ...)."""


class HistoryFormatError(AgentUsageError, ValueError):
    """The data is not a serialized history; the message names the first problem."""


class BackendError(PipoAgentError):
    """A backend failed to produce a turn."""


class ScriptExhaustedError(BackendError):
    """The scripted test backend has no turn left for this request."""


class ToolError(PipoAgentError):
    """A tool call failed; ``str(exc)`` is meant for the model. Raise it from tools for expected failures."""


class ToolTimeoutError(ToolError):
    """The tool's work ran past its time limit and was stopped."""


class PathAccessError(ToolError):
    """A file tool refused a path: outside the root, missing, of the wrong kind or too large."""


class FetchError(ToolError):
    """An HTTP fetch was refused or failed."""


class HostNotAllowedError(FetchError):
    """The host of the URL, or of a redirect target, is not on the tool's allow-list."""
