"""Agent messages: a closed set of serializable pydantic models with a ``kind`` discriminator.

A history is a ``list[Message]``. :func:`dump_history` / :func:`load_history` are its one serializer (plain
JSON-compatible dicts, exact round trip); :func:`dump_message` / :func:`load_message` apply the same schema to
one message, for stores that keep a row per message. :func:`to_chat_dicts` gives the role/content dicts of
:func:`pipo_agent.tasks.chat_format.render_chat` (OpenAI style, with ``reasoning_content``).
"""

import uuid
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from pipo_agent.errors import HistoryFormatError
from pipo_agent.tasks.chat_format import TOOL_CALL_END, TOOL_CALL_START

__all__ = [
    "AssistantMessage",
    "FinishReason",
    "InvalidToolCall",
    "Message",
    "SystemMessage",
    "ToolCall",
    "ToolResultMessage",
    "Usage",
    "UserMessage",
    "dump_history",
    "dump_message",
    "load_history",
    "load_message",
    "new_tool_call_id",
    "to_chat_dicts",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def new_tool_call_id() -> str:
    """A fresh, unique tool-call id (``call_`` and 24 hex digits)."""
    return f"call_{uuid.uuid4().hex[:24]}"


class FinishReason(StrEnum):
    """Why a generated turn ended."""

    STOP = "stop"  # end of turn (EOS) or a stop string
    LENGTH = "length"  # max_tokens reached: the turn is cut off


class ToolCall(_Model):
    """A well-formed call: a JSON object with a string ``name`` and an object ``arguments``."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class InvalidToolCall(_Model):
    """A ``<tool_call>`` block that could not be parsed; ``raw`` is its text, ``error`` says why."""

    id: str
    raw: str
    error: str
    name: str | None = None  # when the block had a string "name" but something else was wrong


class Usage(_Model):
    """Token counts of one or more turns, plus PIPO decode statistics when the backend has them.

    ``reasoning_tokens`` is the part of ``completion_tokens`` spent inside ``<think>``. ``steps`` are backbone
    decode steps; a PIPO step proposes at most one draft token (``drafts_proposed``) of which
    ``drafts_committed`` were kept; ``tokens_per_step`` is ``completion_tokens / steps``; ``tau`` is the draft
    acceptance threshold that was used.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    steps: int | None = None
    drafts_proposed: int | None = None
    drafts_committed: int | None = None
    tokens_per_step: float | None = None
    tau: float | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: "Usage") -> "Usage":
        """Totals over turns: counts add up (an unknown count stays unknown only if both are),
        ``tokens_per_step`` is recomputed from the totals, and ``tau`` is kept only where both agree."""
        steps = _add_optional(self.steps, other.steps)
        completion = self.completion_tokens + other.completion_tokens
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=completion,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            steps=steps,
            drafts_proposed=_add_optional(self.drafts_proposed, other.drafts_proposed),
            drafts_committed=_add_optional(self.drafts_committed, other.drafts_committed),
            tokens_per_step=completion / steps if steps else None,
            tau=self.tau if self.tau == other.tau else None,
        )


def _add_optional(a: int | None, b: int | None) -> int | None:
    if a is None and b is None:
        return None
    return (a or 0) + (b or 0)


class SystemMessage(_Model):
    kind: Literal["system"] = "system"
    content: str


class UserMessage(_Model):
    kind: Literal["user"] = "user"
    content: str


class AssistantMessage(_Model):
    """One generated turn: answer text, the reasoning behind it, and the tool calls it made.

    ``reasoning`` is ``None`` when the backend reported none. Well-formed calls are in ``tool_calls``;
    blocks that could not be parsed are kept in ``invalid_tool_calls`` so the model can be told why.
    """

    kind: Literal["assistant"] = "assistant"
    content: str = ""
    reasoning: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    invalid_tool_calls: list[InvalidToolCall] = Field(default_factory=list)
    usage: Usage | None = None
    finish_reason: FinishReason | None = None


class ToolResultMessage(_Model):
    """The answer to one tool call (valid or invalid), matched by ``tool_call_id``."""

    kind: Literal["tool"] = "tool"
    tool_call_id: str
    name: str | None  # None answers an invalid call that named no tool
    content: str
    is_error: bool = False


Message = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolResultMessage,
    Field(discriminator="kind"),
]

_HISTORY: TypeAdapter[list[Message]] = TypeAdapter(list[Message])
_MESSAGE: TypeAdapter[Message] = TypeAdapter(Message)


def dump_history(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """JSON-compatible dicts of a whole history (every field, ``kind`` first)."""
    dumped: list[dict[str, Any]] = _HISTORY.dump_python(list(messages), mode="json")
    return dumped


def load_history(data: Any) -> list[Message]:
    """The history that :func:`dump_history` produced; raises ``HistoryFormatError`` on anything else."""
    try:
        return _HISTORY.validate_python(data)
    except ValidationError as exc:
        raise HistoryFormatError(f"not a message history: {_first_error(exc)}") from exc


def dump_message(message: Message) -> dict[str, Any]:
    """One message as :func:`dump_history` writes it."""
    dumped: dict[str, Any] = _MESSAGE.dump_python(message, mode="json")
    return dumped


def load_message(data: Any) -> Message:
    """One message as :func:`load_history` reads it."""
    try:
        return _MESSAGE.validate_python(data)
    except ValidationError as exc:
        raise HistoryFormatError(f"not a message: {_first_error(exc)}") from exc


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    return f"{where}: {error['msg']}"


def to_chat_dicts(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The role/content dicts that ``render_chat`` renders in our chat template.

    Assistant turns carry ``reasoning_content`` (the think block) and OpenAI-style ``tool_calls``. An
    invalid call is shown as the block the model wrote, after the content, so the model sees its mistake
    next to the error result; the template puts valid calls after that.
    """
    return [_chat_dict(message) for message in messages]


def _chat_dict(message: Message) -> dict[str, Any]:
    if isinstance(message, SystemMessage | UserMessage):
        return {"role": message.kind, "content": message.content}
    if isinstance(message, ToolResultMessage):
        return {
            "role": "tool",
            "content": message.content,
            "tool_call_id": message.tool_call_id,
            "name": message.name,
        }
    invalid = [f"{TOOL_CALL_START}\n{call.raw}\n{TOOL_CALL_END}" for call in message.invalid_tool_calls]
    content = "\n".join([message.content, *invalid] if message.content else invalid)
    chat: dict[str, Any] = {"role": "assistant", "content": content}
    if message.reasoning is not None:
        chat["reasoning_content"] = message.reasoning
    if message.tool_calls:
        chat["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in message.tool_calls
        ]
    return chat
