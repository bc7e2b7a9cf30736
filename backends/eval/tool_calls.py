"""Tools and tool calls: the `Tool` type and the built-in tools, the parse of one generated assistant turn
(`{reasoning}\\n</think>\\n{content}` then `<tool_call>\\n{json}\\n</tool_call>` blocks), and running a call.

Nothing here raises on model output: a block that is not a JSON object with a string `name`, an unknown tool,
bad arguments or a `ToolError` all become a tool result text starting with `Error:`, written for the model.
"""

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipo_agent.tasks import THINK_END, TOOL_CALL_END, TOOL_CALL_START
from pipo_agent.tools import CALCULATOR_SCHEMA, LOOKUP_SCHEMA, ToolError, calculator, lookup


@dataclass(frozen=True)
class Tool:
    name: str
    fn: Callable[..., str]  # called with the JSON arguments as keywords; raises ToolError for the model
    schema: Mapping[str, Any]  # OpenAI-style {"type": "function", "function": {name, parameters, ...}}

    @property
    def parameters(self) -> Mapping[str, Any]:
        return self.schema.get("function", self.schema).get("parameters") or {}


BUILTIN_TOOLS: tuple[Tool, ...] = (
    Tool("calculator", calculator, CALCULATOR_SCHEMA),
    Tool("lookup", lookup, LOOKUP_SCHEMA),
)


def as_tool(tool: Tool | Callable[..., str]) -> Tool:
    """A `Tool`, or one of the built-in tool functions (`calculator`, `lookup`)."""
    if isinstance(tool, Tool):
        return tool
    for builtin in BUILTIN_TOOLS:
        if tool is builtin.fn:
            return builtin
    raise TypeError(f"{tool!r} is not a built-in tool; wrap it as Tool(name, fn, schema)")


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str | None  # None when the block is not a JSON object with a string "name"
    arguments: Any  # the parsed "arguments" ({} when absent); None when the block is malformed
    raw: str  # the block's text between the tags
    error: str | None  # why the block is malformed, else None


_CALL_BLOCK = re.compile(re.escape(TOOL_CALL_START) + r"(.*?)" + re.escape(TOOL_CALL_END), re.DOTALL)


@dataclass(frozen=True)
class ParsedTurn:
    reasoning: str
    content: str  # the text around the tool-call blocks, stripped
    calls: tuple[ToolCall, ...]


def parse_turn(text: str, first_call_id: int = 1) -> ParsedTurn:
    """Split one generated assistant turn (the text after the generation prompt, EOS excluded)."""
    head, sep, body = text.partition(THINK_END)
    if not sep:  # cut off inside the reasoning
        return ParsedTurn(reasoning=text, content="", calls=())
    pieces: list[str] = []
    raws: list[tuple[str, str | None]] = []  # (block text, why it is malformed)
    last = 0
    body = body.removeprefix("\n")
    for match in _CALL_BLOCK.finditer(body):
        pieces.append(body[last : match.start()])
        raws.append((match.group(1).strip("\n"), None))
        last = match.end()
    tail = body[last:]
    start = tail.find(TOOL_CALL_START)
    if start >= 0:
        unclosed = tail[start + len(TOOL_CALL_START) :].strip("\n")
        raws.append((unclosed, f"the tool call block is not closed with {TOOL_CALL_END}"))
        tail = tail[:start]
    pieces.append(tail)
    calls = tuple(_parse_call(f"call_{first_call_id + i}", raw, error) for i, (raw, error) in enumerate(raws))
    return ParsedTurn(reasoning=head.removesuffix("\n"), content="".join(pieces).strip(), calls=calls)


def _parse_call(call_id: str, raw: str, error: str | None) -> ToolCall:
    if error is not None:
        return ToolCall(call_id, None, None, raw, error)
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError as exc:
        return ToolCall(call_id, None, None, raw, f"the tool call is not valid JSON ({exc.msg})")
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
        return ToolCall(call_id, None, None, raw, 'a tool call must be a JSON object with a string "name"')
    return ToolCall(call_id, payload["name"], payload.get("arguments", {}), raw, None)


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def _argument_error(tool: Tool, arguments: Any) -> str | None:
    if not isinstance(arguments, dict):
        return f"the arguments of {tool.name} must be a JSON object, got {type(arguments).__name__}"
    properties = tool.parameters.get("properties") or {}
    unknown = sorted(set(arguments) - set(properties))
    missing = [name for name in tool.parameters.get("required") or () if name not in arguments]
    expected = ", ".join(properties) or "none"
    if unknown or missing:
        parts = [f"unknown {unknown}" if unknown else "", f"missing {missing}" if missing else ""]
        return f"bad arguments for {tool.name}: {'; '.join(p for p in parts if p)}; expected: {expected}"
    for name, value in arguments.items():
        kind = properties[name].get("type")
        types = _JSON_TYPES.get(kind) if isinstance(kind, str) else None
        wrong_bool = isinstance(value, bool) and kind != "boolean"
        if types is not None and (wrong_bool or not isinstance(value, types)):
            return f"argument {name!r} of {tool.name} must be a {kind}, got {json.dumps(value)}"
    return None


def run_tool(call: ToolCall, tools: Mapping[str, Tool]) -> tuple[str, bool]:
    """(content, is_error) of the tool message answering `call`."""
    if call.error is not None:
        return f"Error: {call.error}", True
    tool = tools.get(call.name or "")
    if tool is None:
        return f"Error: unknown tool {call.name!r}; available tools: {', '.join(tools)}", True
    problem = _argument_error(tool, call.arguments)
    if problem is not None:
        return f"Error: {problem}", True
    try:
        return tool.fn(**call.arguments), False
    except ToolError as exc:
        return f"Error: {exc}", True
