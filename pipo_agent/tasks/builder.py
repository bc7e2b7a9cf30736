"""Assembles a gold trajectory turn by turn, running the real tools for every tool call."""

from collections.abc import Callable, Sequence
from typing import Final

from pipo_agent.tasks.errors import SolverError
from pipo_agent.tasks.types import (
    Message,
    ToolSchema,
    Trajectory,
    assistant_message,
    system_message,
    tool_call,
    tool_message,
    user_message,
)
from pipo_agent.tools import CALCULATOR_SCHEMA, LOOKUP_SCHEMA, ToolError, calculator, lookup

TOOL_SCHEMAS: Final[tuple[ToolSchema, ...]] = (CALCULATOR_SCHEMA, LOOKUP_SCHEMA)

_TOOLS: Final[dict[str, Callable[[str], str]]] = {"calculator": calculator, "lookup": lookup}
_ARGUMENT: Final = {"calculator": "expression", "lookup": "item"}


class TrajectoryBuilder:
    """Collects reasoning lines; each tool-call batch closes an assistant turn, ``finish`` closes the last."""

    def __init__(self, question: str, tools: Sequence[ToolSchema] = TOOL_SCHEMAS) -> None:
        self._tools = tuple(tools)
        self._messages: list[Message] = [system_message(), user_message(question)]
        self._lines: list[str] = []
        self._calls = 0

    def think(self, *lines: str) -> None:
        self._lines.extend(lines)

    def call(self, name: str, argument: str) -> str:
        return self.call_parallel([(name, argument)])[0]

    def call_parallel(self, calls: Sequence[tuple[str, str]]) -> list[str]:
        """End the current assistant turn with these calls (one turn, several blocks) and run them."""
        requests = []
        for name, argument in calls:
            self._calls += 1
            requests.append((f"call_{self._calls}", name, argument))
        self._messages.append(
            assistant_message(
                self._reasoning(),
                tool_calls=[
                    tool_call(call_id, name, {_ARGUMENT[name]: arg}) for call_id, name, arg in requests
                ],
            )
        )
        results = []
        for call_id, name, argument in requests:
            try:
                result = _TOOLS[name](argument)
            except ToolError as exc:
                raise SolverError(f"gold tool call {name}({argument!r}) failed: {exc}") from exc
            self._messages.append(tool_message(call_id, name, result))
            results.append(result)
        return results

    def calculate(self, batch: Sequence[tuple[str, int]]) -> list[int]:
        """Call the calculator once per ``(expression, expected)`` in one turn, then state each result."""
        results = self.call_parallel([("calculator", expression) for expression, _ in batch])
        values = []
        for (expression, expected), result in zip(batch, results, strict=True):
            if result != str(expected):
                raise SolverError(f"calculator gave {result!r} for {expression}, expected {expected}")
            self.think(f"The calculator gives {expression} = {result}.")
            values.append(expected)
        return values

    def finish(self, answer: str) -> Trajectory:
        self._messages.append(assistant_message(self._reasoning(), content=f"Answer: {answer}"))
        return Trajectory(messages=tuple(self._messages), tools=self._tools)

    def _reasoning(self) -> str:
        text = "\n".join(self._lines)
        self._lines = []
        return text
