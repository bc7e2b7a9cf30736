"""The chat format: special tokens and a pure-Python renderer of OpenAI-style conversations.

The tokenizer's Jinja chat template (``pipo_agent.backends.train.tokenizer.CHAT_TEMPLATE``) renders the
same string; a test asserts equality on generated conversations, so change both or neither.

Layout (ChatML-like; every turn ends with ``<|im_end|>\\n``)::

    <|im_start|>system\\n{system text}\\n# Tools\\n{one line per tool}\\n<|im_end|>\\n
    <|im_start|>user\\n{question}<|im_end|>\\n
    <|im_start|>assistant\\n<think>\\n{reasoning}\\n</think>\\n{content and/or tool calls}<|im_end|>\\n
    <|im_start|>tool\\n<tool_response>\\n{result}\\n</tool_response><|im_end|>\\n

- The ``# Tools`` block appears only when tools are given; without a system message it forms a system turn
  of its own. A tool line is ``name(arg: type, opt?: type) - description`` (``?`` marks optional arguments).
- An assistant turn always has a think block (empty reasoning renders as ``<think>\\n\\n</think>\\n``).
  Its body is the content (if non-empty) and then one ``<tool_call>\\n{json}\\n</tool_call>`` block per
  call, joined by ``\\n``. The call JSON is ``{"name": ..., "arguments": ...}`` with ``json.dumps``
  defaults (``ensure_ascii=False``, like Hugging Face's ``tojson``); arguments given as a string are taken
  to be JSON already and inserted verbatim.
- Each tool message is its own turn, in the order of the calls.
- ``add_generation_prompt`` appends ``<|im_start|>assistant\\n<think>\\n``.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pipo_agent.tasks.errors import ChatFormatError

PAD_TOKEN: Final = "<|pad|>"
ENDOFTEXT_TOKEN: Final = "<|endoftext|>"
IM_START: Final = "<|im_start|>"
IM_END: Final = "<|im_end|>"
THINK_START: Final = "<think>"
THINK_END: Final = "</think>"
TOOL_CALL_START: Final = "<tool_call>"
TOOL_CALL_END: Final = "</tool_call>"
TOOL_RESPONSE_START: Final = "<tool_response>"
TOOL_RESPONSE_END: Final = "</tool_response>"

# A token's id is its index here; the model, the decoders and the tokenizer all rely on ids 0..9.
SPECIAL_TOKENS: Final[tuple[str, ...]] = (
    PAD_TOKEN,
    ENDOFTEXT_TOKEN,
    IM_START,
    IM_END,
    THINK_START,
    THINK_END,
    TOOL_CALL_START,
    TOOL_CALL_END,
    TOOL_RESPONSE_START,
    TOOL_RESPONSE_END,
)

GENERATION_PROMPT: Final = f"{IM_START}assistant\n{THINK_START}\n"

ROLES: Final = frozenset({"system", "user", "assistant", "tool"})


def render_chat(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    add_generation_prompt: bool = False,
) -> str:
    """Render a conversation exactly like the tokenizer's chat template does."""
    tools_block = render_tools(tools) if tools else ""
    parts: list[str] = []
    rest = messages
    if messages and messages[0].get("role") == "system":
        system = _text(messages[0], "content")
        tail = f"\n{tools_block}" if tools_block else ""
        parts.append(f"{IM_START}system\n{system}{tail}{IM_END}\n")
        rest = messages[1:]
    elif tools_block:
        parts.append(f"{IM_START}system\n{tools_block}{IM_END}\n")
    parts.extend(render_message(message) for message in rest)
    if add_generation_prompt:
        parts.append(GENERATION_PROMPT)
    return "".join(parts)


def render_message(message: Mapping[str, Any]) -> str:
    """Render one non-leading message as a full turn."""
    role = message.get("role")
    if role in ("system", "user"):
        return f"{IM_START}{role}\n{_text(message, 'content')}{IM_END}\n"
    if role == "assistant":
        reasoning = message.get("reasoning_content") or ""
        if not isinstance(reasoning, str):
            raise ChatFormatError("assistant reasoning_content must be a string")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise ChatFormatError("assistant content must be a string or None")
        body = [content] if content else []
        body.extend(render_tool_call(call) for call in message.get("tool_calls") or ())
        return f"{IM_START}assistant\n{THINK_START}\n{reasoning}\n{THINK_END}\n{chr(10).join(body)}{IM_END}\n"
    if role == "tool":
        result = _text(message, "content")
        return f"{IM_START}tool\n{TOOL_RESPONSE_START}\n{result}\n{TOOL_RESPONSE_END}{IM_END}\n"
    raise ChatFormatError(f"unknown role {role!r}; valid roles: {', '.join(sorted(ROLES))}")


def render_tool_call(call: Mapping[str, Any]) -> str:
    """One ``<tool_call>`` block; accepts ``{"type": "function", "function": {...}}`` or the bare function."""
    function = call.get("function", call)
    name = function.get("name")
    if not isinstance(name, str):
        raise ChatFormatError("a tool call needs a string 'name'")
    arguments = function.get("arguments", {})
    arguments_json = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    payload = f'{{"name": {json.dumps(name, ensure_ascii=False)}, "arguments": {arguments_json}}}'
    return f"{TOOL_CALL_START}\n{payload}\n{TOOL_CALL_END}"


def render_tools(tools: Sequence[Mapping[str, Any]]) -> str:
    """The ``# Tools`` block: a heading and one signature line per tool, each ending in a newline."""
    return "# Tools\n" + "".join(f"{render_tool_signature(tool)}\n" for tool in tools)


def render_tool_signature(tool: Mapping[str, Any]) -> str:
    """``name(arg: type, opt?: type) - description`` from an OpenAI-style function schema."""
    function = tool.get("function", tool)
    name = function.get("name")
    if not isinstance(name, str):
        raise ChatFormatError("a tool schema needs a string 'name'")
    parameters = function.get("parameters") or {}
    required = parameters.get("required") or []
    args = []
    for arg_name, prop in (parameters.get("properties") or {}).items():
        kind = prop.get("type", "any")
        kind_text = kind if isinstance(kind, str) else "|".join(kind)
        marker = "" if arg_name in required else "?"
        args.append(f"{arg_name}{marker}: {kind_text}")
    line = f"{name}({', '.join(args)})"
    description = function.get("description")
    return f"{line} - {description}" if description else line


def _text(message: Mapping[str, Any], key: str) -> str:
    value = message.get(key)
    if not isinstance(value, str):
        raise ChatFormatError(
            f"{message.get('role')} message needs a string {key!r}, got {type(value).__name__}"
        )
    return value
