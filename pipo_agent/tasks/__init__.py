"""Synthetic reasoning tasks for training a tiny PIPO model from scratch.

Three families of different difficulty (see :mod:`~pipo_agent.tasks.registry`):

- ``arithmetic``: multi-step word problems; products of two numbers >= 10 go to the calculator tool,
  additions and subtractions are written out digit by digit.
- ``conversion``: prices and unit conversions that need the ``lookup`` tool.
- ``strings``: exact string and list manipulation with long element-by-element traces; no tools.

Generation is deterministic from a seed; :func:`solve` builds a gold :class:`Trajectory` whose tool results
come from the real tools; :func:`check` grades a final ``Answer:`` line. The chat format (special tokens and
:func:`render_chat`) is shared with the tokenizer's chat template.
"""

from pipo_agent.tasks.chat_format import (
    ENDOFTEXT_TOKEN,
    GENERATION_PROMPT,
    IM_END,
    IM_START,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    THINK_END,
    THINK_START,
    TOOL_CALL_END,
    TOOL_CALL_START,
    TOOL_RESPONSE_END,
    TOOL_RESPONSE_START,
    render_chat,
)
from pipo_agent.tasks.checker import check, extract_answer, normalize_answer
from pipo_agent.tasks.errors import ChatFormatError, SolverError, TaskError, TaskSpecError, UnknownFamilyError
from pipo_agent.tasks.mixture import LengthStats, TaskMix, generate_mixture, length_stats
from pipo_agent.tasks.registry import (
    FAMILIES,
    Family,
    family_names,
    generate_tasks,
    get_family,
    make_task,
    solve,
)
from pipo_agent.tasks.types import (
    MAX_DIFFICULTY,
    MIN_DIFFICULTY,
    SYSTEM_PROMPT,
    AnswerKind,
    Message,
    Task,
    ToolSchema,
    Trajectory,
)

__all__ = [
    "ENDOFTEXT_TOKEN",
    "FAMILIES",
    "GENERATION_PROMPT",
    "IM_END",
    "IM_START",
    "MAX_DIFFICULTY",
    "MIN_DIFFICULTY",
    "PAD_TOKEN",
    "SPECIAL_TOKENS",
    "SYSTEM_PROMPT",
    "THINK_END",
    "THINK_START",
    "TOOL_CALL_END",
    "TOOL_CALL_START",
    "TOOL_RESPONSE_END",
    "TOOL_RESPONSE_START",
    "AnswerKind",
    "ChatFormatError",
    "Family",
    "LengthStats",
    "Message",
    "SolverError",
    "Task",
    "TaskError",
    "TaskMix",
    "TaskSpecError",
    "ToolSchema",
    "Trajectory",
    "UnknownFamilyError",
    "check",
    "extract_answer",
    "family_names",
    "generate_mixture",
    "generate_tasks",
    "get_family",
    "length_stats",
    "make_task",
    "normalize_answer",
    "render_chat",
    "solve",
]
