"""What a turn must satisfy (``tool_choice``, ``response_format``), how the model is told, and the checks.

The PIPO backend has no constrained decoding, so requirements are enforced by instruction and validation:
the instruction is appended to the system prompt, each finished turn is checked, and a turn that breaks a
requirement is answered with a user message naming the problem and generated again, up to ``max_retries``
times. What is guaranteed: a forced ``tool_choice`` either returns a turn with a well-formed call to an
allowed tool whose required arguments are present, or raises ``ToolChoiceError``; ``tool_choice="none"``
never returns a valid call (calls the model writes anyway become invalid calls). What is not: argument
types and values beyond the required keys, and a ``response_format`` (the last try is returned as it is,
and the output parser reports a bad answer).
"""

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from langchain_core.utils.json import parse_json_markdown

from pipo_agent.messages import AssistantMessage, Message, SystemMessage, ToolCall

__all__ = ["ResponseFormat", "ToolChoice", "ToolChoiceMode", "TurnRules", "parse_response_format"]


class ToolChoiceMode(StrEnum):
    AUTO = "auto"  # the model decides
    NONE = "none"  # tools are not shown, and calls are not returned as valid
    REQUIRED = "required"  # at least one call to any bound tool ("any", "required", True)
    NAMED = "named"  # at least one call to the named tool


@dataclass(frozen=True)
class ToolChoice:
    mode: ToolChoiceMode = ToolChoiceMode.AUTO
    name: str | None = None

    @classmethod
    def parse(cls, value: object, tools: list[dict[str, Any]]) -> "ToolChoice":
        """LangChain's ``tool_choice`` values; raises ``ValueError`` for a tool that is not bound."""
        names = [tool["function"]["name"] for tool in tools]
        if value is None or value == "auto" or value is False:
            return cls()
        if value == "none":
            return cls(ToolChoiceMode.NONE)
        if not tools:
            raise ValueError(f"tool_choice={value!r} needs tools; bind them with bind_tools")
        if value in ("any", "required") or value is True:
            return cls(ToolChoiceMode.REQUIRED)
        name = value
        if isinstance(value, dict):
            name = (
                value.get("function", {}).get("name")
                if value.get("type") == "function"
                else value.get("name")
            )
        if not isinstance(name, str) or name not in names:
            raise ValueError(
                f"tool_choice={value!r} names no bound tool; valid: 'auto', 'none', 'any', 'required', "
                f"or one of {names}"
            )
        return cls(ToolChoiceMode.NAMED, name)

    @property
    def forced(self) -> bool:
        return self.mode in (ToolChoiceMode.REQUIRED, ToolChoiceMode.NAMED)


@dataclass(frozen=True)
class ResponseFormat:
    """A JSON answer: any object (``json_mode``), or one matching ``schema`` (``json_schema``)."""

    schema: dict[str, Any] | None = None


def parse_response_format(value: object) -> ResponseFormat | None:
    """OpenAI-style ``response_format``: ``{"type": "json_object"}`` or ``{"type": "json_schema",
    "json_schema": {"schema": {...}, ...}}``; raises ``ValueError`` for anything else."""
    if value is None:
        return None
    if isinstance(value, dict) and value.get("type") == "json_object":
        return ResponseFormat()
    if isinstance(value, dict) and value.get("type") == "json_schema":
        schema = (value.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            return ResponseFormat(schema)
    raise ValueError(
        "response_format must be {'type': 'json_object'} or {'type': 'json_schema', 'json_schema': "
        f"{{'schema': {{...}}}}}}, got {value!r}"
    )


@dataclass(frozen=True)
class TurnRules:
    """The requirements of one call: the bound tools, ``tool_choice`` and ``response_format``."""

    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    response_format: ResponseFormat | None = None

    @property
    def checked(self) -> bool:
        """Whether finished turns are checked (and so must be held back until they pass)."""
        return self.tool_choice.forced or self.response_format is not None

    @property
    def shown_tools(self) -> list[dict[str, Any]]:
        return [] if self.tool_choice.mode is ToolChoiceMode.NONE else self.tools

    def instructed(self, messages: list[Message]) -> list[Message]:
        """``messages`` with the instruction appended to the system prompt (or a system prompt of its own)."""
        instruction = self._instruction()
        if instruction is None:
            return messages
        if messages and isinstance(messages[0], SystemMessage):
            first = SystemMessage(content=f"{messages[0].content}\n\n{instruction}")
            return [first, *messages[1:]]
        return [SystemMessage(content=instruction), *messages]

    def _instruction(self) -> str | None:
        parts: list[str] = []
        choice = self.tool_choice
        if choice.mode is ToolChoiceMode.NAMED:
            parts.append(f"In this turn you must call the tool {choice.name}.")
        elif choice.mode is ToolChoiceMode.REQUIRED:
            parts.append("In this turn you must call one of the tools.")
        fmt = self.response_format
        if fmt is not None:
            parts.append("Answer with one JSON object and nothing else.")
            if fmt.schema is not None:
                parts.append(f"It must match this JSON schema: {json.dumps(fmt.schema, ensure_ascii=False)}")
        return " ".join(parts) if parts else None

    def problem(self, message: AssistantMessage) -> str | None:
        """Why ``message`` breaks a requirement, in words for the model; ``None`` if it does not."""
        choice = self.tool_choice
        if choice.forced:
            allowed = (
                [choice.name] if choice.name is not None else [t["function"]["name"] for t in self.tools]
            )
            if not any(self._satisfies(call, allowed) for call in message.tool_calls):
                target = (
                    f"the tool {choice.name}" if choice.name else f"one of the tools ({', '.join(allowed)})"
                )
                return f"You did not call {target} with its required arguments. Call it now."
            return None
        if self.response_format is not None and not message.tool_calls:
            return _json_problem(message.content, self.response_format.schema)
        return None

    def _satisfies(self, call: ToolCall, allowed: list[str]) -> bool:
        if call.name not in allowed:
            return False
        tool = next(t for t in self.tools if t["function"]["name"] == call.name)
        required = (tool["function"].get("parameters") or {}).get("required") or []
        return all(name in call.arguments for name in required)


def _json_problem(text: str, schema: dict[str, Any] | None) -> str | None:
    try:
        value = parse_json_markdown(text, parser=json.loads)  # strict: no completion of a cut-off object
    except (ValueError, TypeError) as exc:
        return f"Your answer is not a JSON object ({exc}). Answer with one JSON object and nothing else."
    if not isinstance(value, dict):
        return "Your answer is JSON but not an object. Answer with one JSON object and nothing else."
    if schema is not None:
        missing = [key for key in schema.get("required") or [] if key not in value]
        if missing:
            return f"Your JSON object lacks the required keys {missing}. Answer again with all of them."
    return None
