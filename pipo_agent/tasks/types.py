"""The task and trajectory types shared by every family."""

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pipo_agent.tasks.chat_format import render_chat
from pipo_agent.tasks.errors import TaskSpecError

# OpenAI-style message and tool-schema dicts; they go straight into ``apply_chat_template``.
Message = dict[str, Any]
ToolSchema = dict[str, Any]

MIN_DIFFICULTY: Final = 1
MAX_DIFFICULTY: Final = 5

SYSTEM_PROMPT: Final = (
    "You are a careful assistant. Reason step by step before you answer, use the tools when they help, "
    "and end with a line 'Answer: <value>'."
)


class AnswerKind(enum.Enum):
    """How :func:`pipo_agent.tasks.check` compares a reply with the gold answer.

    - ``INTEGER``: a whole number; thousands separators (``1,995``) are accepted.
    - ``TEXT``: an exact, case-sensitive string; runs of whitespace compare as one space.
    - ``LIST``: items in order; the canonical form separates items by one space, and the checker also
      accepts commas and surrounding brackets (``[3, 7, 12]``).
    """

    INTEGER = "integer"
    TEXT = "text"
    LIST = "list"


@dataclass(frozen=True, slots=True)
class Task:
    """One generated problem. ``meta`` holds the structured problem the gold solver works from; it is
    JSON-serializable so tasks can be stored as JSON lines."""

    family: str
    question: str
    answer: str
    difficulty: int
    seed: int
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)
    answer_kind: AnswerKind = AnswerKind.INTEGER

    def __post_init__(self) -> None:
        check_difficulty(self.difficulty)

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "question": self.question,
            "answer": self.answer,
            "difficulty": self.difficulty,
            "seed": self.seed,
            "meta": dict(self.meta),
            "answer_kind": self.answer_kind.value,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Task":
        unknown = set(data) - {"family", "question", "answer", "difficulty", "seed", "meta", "answer_kind"}
        if unknown:
            raise TaskSpecError(f"unknown task keys: {', '.join(sorted(unknown))}")
        return cls(
            family=data["family"],
            question=data["question"],
            answer=data["answer"],
            difficulty=data["difficulty"],
            seed=data["seed"],
            meta=dict(data.get("meta", {})),
            answer_kind=AnswerKind(data.get("answer_kind", AnswerKind.INTEGER.value)),
        )


@dataclass(frozen=True, slots=True)
class Trajectory:
    """A gold conversation: optional system, user, then assistant/tool turns ending in the final answer."""

    messages: tuple[Message, ...]
    tools: tuple[ToolSchema, ...] = ()

    @property
    def final_text(self) -> str:
        """The content of the last assistant message (holds the ``Answer:`` line)."""
        for message in reversed(self.messages):
            if message["role"] == "assistant":
                content = message.get("content")
                return content if isinstance(content, str) else ""
        return ""

    @property
    def prompt_messages(self) -> list[Message]:
        """The messages up to and including the first user turn: what a model is asked to continue."""
        for index, message in enumerate(self.messages):
            if message["role"] == "user":
                return list(self.messages[: index + 1])
        return list(self.messages)

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """Every tool call in order, as ``{"name": ..., "arguments": ...}``."""
        return [
            call["function"]
            for message in self.messages
            if message["role"] == "assistant"
            for call in message.get("tool_calls") or ()
        ]

    def render(self, *, add_generation_prompt: bool = False) -> str:
        return render_chat(list(self.messages), list(self.tools), add_generation_prompt=add_generation_prompt)


def check_difficulty(difficulty: int) -> None:
    if not MIN_DIFFICULTY <= difficulty <= MAX_DIFFICULTY:
        raise TaskSpecError(f"difficulty must be in {MIN_DIFFICULTY}..{MAX_DIFFICULTY}, got {difficulty}")


def system_message(text: str = SYSTEM_PROMPT) -> Message:
    return {"role": "system", "content": text}


def user_message(text: str) -> Message:
    return {"role": "user", "content": text}


def assistant_message(
    reasoning: str, content: str = "", tool_calls: list[dict[str, Any]] | None = None
) -> Message:
    message: Message = {"role": "assistant", "reasoning_content": reasoning, "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def tool_call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def tool_message(call_id: str, name: str, content: str) -> Message:
    return {"role": "tool", "tool_call_id": call_id, "name": name, "content": content}
