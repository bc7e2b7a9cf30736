"""Tools from typed Python functions, and a :class:`Toolset` that runs tool calls safely.

``@tool`` (or :meth:`Tool.from_function`) builds the JSON schema of a function's arguments from its
signature with pydantic, and the descriptions from its Google-style docstring (``Args:``). The function may
be sync or async; it returns a string, or any JSON-serializable value (sent as JSON text).

:meth:`Toolset.call` never raises for anything the model did or a tool did: unknown tools, invalid calls,
arguments that fail validation, timeouts (``anyio.move_on_after``) and exceptions all become an error :class:`ToolResultMessage`
whose text names the problem (and the valid tool names or arguments). Only cancellation propagates.
"""

import inspect
import logging
import re
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, overload

import anyio
import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, PydanticUserError, ValidationError, create_model
from pydantic.json_schema import GenerateJsonSchema

from pipo_agent._docstring import parse_docstring
from pipo_agent.errors import ToolDefinitionError, ToolError
from pipo_agent.messages import InvalidToolCall, ToolCall, ToolResultMessage
from pipo_agent.tasks.chat_format import render_tool_signature

__all__ = ["DEFAULT_TOOL_TIMEOUT_S", "Tool", "Toolset", "tool"]

logger = logging.getLogger(__name__)

DEFAULT_TOOL_TIMEOUT_S: Final = 60.0
_NAME: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what OpenAI-style APIs accept as a function name
_VARIADIC: Final = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


class _ToolJsonSchema(GenerateJsonSchema):
    """Pydantic's JSON schema without the per-field titles, which only repeat the argument names."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


@dataclass(frozen=True)
class Tool:
    """A callable the model may use: its name, description, argument schema and how to run it.

    ``timeout`` (seconds, ``None`` for none) bounds one call; a sync function that overruns keeps running in
    its worker thread, since Python cannot stop a thread. ``run_alone`` asks the agent loop to run this
    tool's calls one at a time, never beside other calls.
    """

    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object
    fn: Callable[..., Any]
    arguments_model: type[BaseModel]
    timeout: float | None = DEFAULT_TOOL_TIMEOUT_S
    run_alone: bool = False

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = DEFAULT_TOOL_TIMEOUT_S,
        run_alone: bool = False,
    ) -> "Tool":
        """A tool from a typed function; raises ``ToolDefinitionError`` when that is impossible."""
        tool_name = name if name is not None else getattr(fn, "__name__", "")
        if not _NAME.match(tool_name):
            raise ToolDefinitionError(
                f"tool name {tool_name!r} must be 1-64 letters, digits, '_' or '-'; pass name=..."
            )
        if timeout is not None and timeout <= 0:
            raise ToolDefinitionError(f"timeout of tool {tool_name} must be positive or None, got {timeout}")
        docs = parse_docstring(inspect.getdoc(fn))
        model = _arguments_model(fn, tool_name, docs.args)
        try:
            parameters = model.model_json_schema(schema_generator=_ToolJsonSchema)
        except PydanticUserError as exc:
            raise ToolDefinitionError(
                f"the arguments of tool {tool_name} have no JSON schema: {exc}"
            ) from exc
        parameters.pop("title", None)
        return cls(
            name=tool_name,
            description=description if description is not None else docs.description,
            parameters=parameters,
            fn=fn,
            arguments_model=model,
            timeout=timeout,
            run_alone=run_alone,
        )

    @property
    def schema(self) -> dict[str, Any]:
        """The OpenAI-style function schema, as in a :class:`~pipo_agent.backend.ChatRequest`."""
        function = {"name": self.name, "description": self.description, "parameters": self.parameters}
        return {"type": "function", "function": function}

    @property
    def signature(self) -> str:
        """The tool's line in the prompt: ``name(arg: type, opt?: type) - description``."""
        return render_tool_signature(self.schema)

    async def call(self, call: ToolCall) -> ToolResultMessage:
        """Validate the arguments, run the function under the timeout, and report the outcome."""
        try:
            arguments = self.arguments_model.model_validate(call.arguments)
        except ValidationError as exc:
            problems = "; ".join(_describe_error(error) for error in exc.errors())
            return _error(call, f"invalid arguments for {self.name}: {problems}. Expected {self.signature}")
        # move_on_after rather than fail_after: a TimeoutError raised by the tool itself is then not
        # mistaken for our deadline.
        with anyio.move_on_after(self.timeout):
            try:
                content = _as_text(await self._run(arguments))
            except Exception as exc:
                return _exception_result(call, _unwrap(exc))
            return ToolResultMessage(tool_call_id=call.id, name=call.name, content=content)
        return _error(call, f"{self.name} did not finish within {self.timeout:g} s and was stopped")

    async def _run(self, arguments: BaseModel) -> Any:
        args, kwargs = _call_arguments(self.fn, arguments)
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(*args, **kwargs)
        result = await anyio.to_thread.run_sync(partial(self.fn, *args, **kwargs), abandon_on_cancel=True)
        if inspect.isawaitable(result):  # e.g. a sync wrapper around a coroutine function
            return await result
        return result


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = DEFAULT_TOOL_TIMEOUT_S,
    run_alone: bool = False,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = DEFAULT_TOOL_TIMEOUT_S,
    run_alone: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Decorator: ``@tool`` or ``@tool(timeout=5, run_alone=True)`` turns a function into a :class:`Tool`."""

    def decorate(function: Callable[..., Any]) -> Tool:
        return Tool.from_function(
            function, name=name, description=description, timeout=timeout, run_alone=run_alone
        )

    return decorate(fn) if fn is not None else decorate


class Toolset:
    """Tools by name; :meth:`call` answers any tool call with a :class:`ToolResultMessage`."""

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for item in tools:
            new = item if isinstance(item, Tool) else Tool.from_function(item)
            if new.name in self._tools:
                raise ToolDefinitionError(f"two tools are named {new.name!r}; tool names must be unique")
            self._tools[new.name] = new

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        """The OpenAI-style schemas of all tools, for :class:`~pipo_agent.backend.ChatRequest`."""
        return [t.schema for t in self._tools.values()]

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    async def call(self, call: ToolCall | InvalidToolCall) -> ToolResultMessage:
        """The result of one call; errors (including an invalid or unknown call) are results, never raised."""
        if isinstance(call, InvalidToolCall):
            return _error(call, call.error)
        found = self._tools.get(call.name)
        if found is None:
            available = ", ".join(self._tools) if self._tools else "none"
            return _error(call, f"unknown tool {call.name!r}; available tools: {available}")
        return await found.call(call)


def _arguments_model(fn: Callable[..., Any], tool_name: str, docs: dict[str, str]) -> type[BaseModel]:
    try:
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)
    except (TypeError, ValueError, NameError) as exc:
        raise ToolDefinitionError(f"cannot read the signature of tool {tool_name}: {exc}") from exc
    fields: dict[str, Any] = {}
    for parameter in signature.parameters.values():
        if parameter.kind in _VARIADIC:
            raise ToolDefinitionError(f"tool {tool_name} cannot take *{parameter.name} or **{parameter.name}")
        if parameter.name not in hints:
            raise ToolDefinitionError(
                f"parameter {parameter.name!r} of tool {tool_name} has no type annotation"
            )
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        described = docs.get(parameter.name)
        info = Field(default, description=described) if described else Field(default)
        fields[parameter.name] = (hints[parameter.name], info)
    try:
        return create_model(f"{tool_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
    except (PydanticUserError, NameError, TypeError) as exc:
        raise ToolDefinitionError(f"cannot build the arguments of tool {tool_name}: {exc}") from exc


def _call_arguments(fn: Callable[..., Any], arguments: BaseModel) -> tuple[list[Any], dict[str, Any]]:
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for parameter in inspect.signature(fn).parameters.values():
        value = getattr(arguments, parameter.name)
        if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            args.append(value)
        else:
            kwargs[parameter.name] = value
    return args, kwargs


def _describe_error(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "arguments"
    return f"{where}: {error['msg']}"


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return pydantic_core.to_json(value).decode()


def _error(call: ToolCall | InvalidToolCall, message: str) -> ToolResultMessage:
    return ToolResultMessage(tool_call_id=call.id, name=call.name, content=f"Error: {message}", is_error=True)


def _unwrap(exc: Exception) -> Exception:
    """The one exception inside (nested) single-exception groups, e.g. from a tool's task group."""
    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _exception_result(call: ToolCall, exc: Exception) -> ToolResultMessage:
    if isinstance(exc, ToolError):
        return _error(call, str(exc))
    logger.warning("tool %s raised %s", call.name, type(exc).__name__, exc_info=exc)
    detail = f": {exc}" if str(exc) else ""
    return _error(call, f"{call.name} failed with {type(exc).__name__}{detail}")
