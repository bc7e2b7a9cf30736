"""The pure-Python chat renderer: layout, tools block, tool calls and generation prompt."""

import pytest

from pipo_agent.tasks import GENERATION_PROMPT, SPECIAL_TOKENS, ChatFormatError, render_chat
from pipo_agent.tools import CALCULATOR_SCHEMA, LOOKUP_SCHEMA

TOOLS = [CALCULATOR_SCHEMA, LOOKUP_SCHEMA]


def test_special_tokens_are_in_id_order() -> None:
    assert SPECIAL_TOKENS == (
        "<|pad|>",
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<think>",
        "</think>",
        "<tool_call>",
        "</tool_call>",
        "<tool_response>",
        "</tool_response>",
    )


def test_full_conversation_layout() -> None:
    messages = [
        {"role": "system", "content": "Be careful."},
        {"role": "user", "content": "What is 37 * 48 + 219?"},
        {
            "role": "assistant",
            "reasoning_content": "Use the calculator.",
            "content": "",
            "tool_calls": [
                {
                    "type": "function",
                    "function": {"name": "calculator", "arguments": {"expression": "37 * 48"}},
                }
            ],
        },
        {"role": "tool", "content": "1776"},
        {"role": "assistant", "reasoning_content": "1776 + 219 = 1995", "content": "Answer: 1995"},
    ]
    assert render_chat(messages, TOOLS) == (
        "<|im_start|>system\nBe careful.\n# Tools\n"
        "calculator(expression: string) - Evaluate an arithmetic expression exactly.\n"
        "lookup(item: string) - Look up a grocery price in dollars or a unit conversion factor.\n"
        "<|im_end|>\n"
        "<|im_start|>user\nWhat is 37 * 48 + 219?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\nUse the calculator.\n</think>\n"
        '<tool_call>\n{"name": "calculator", "arguments": {"expression": "37 * 48"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>tool\n<tool_response>\n1776\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n<think>\n1776 + 219 = 1995\n</think>\nAnswer: 1995<|im_end|>\n"
    )


def test_tools_without_system_message_get_their_own_system_turn() -> None:
    text = render_chat([{"role": "user", "content": "hi"}], [CALCULATOR_SCHEMA])
    assert text.startswith("<|im_start|>system\n# Tools\ncalculator(expression: string) - ")
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n")


def test_no_tools_means_no_tools_block() -> None:
    text = render_chat([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}], [])
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"


def test_generation_prompt_opens_a_think_block() -> None:
    text = render_chat([{"role": "user", "content": "U"}], add_generation_prompt=True)
    assert text.endswith(GENERATION_PROMPT)
    assert GENERATION_PROMPT == "<|im_start|>assistant\n<think>\n"


def test_parallel_calls_and_string_arguments() -> None:
    message = {
        "role": "assistant",
        "reasoning_content": "r",
        "tool_calls": [
            {"function": {"name": "lookup", "arguments": {"item": "apples"}}},
            {"name": "lookup", "arguments": '{"item": "pears"}'},
        ],
    }
    text = render_chat([message])
    assert text == (
        "<|im_start|>assistant\n<think>\nr\n</think>\n"
        '<tool_call>\n{"name": "lookup", "arguments": {"item": "apples"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "lookup", "arguments": {"item": "pears"}}\n</tool_call><|im_end|>\n'
    )


def test_optional_and_union_parameters_in_signatures() -> None:
    tool = {
        "name": "search",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": ["integer", "null"]}, "x": {}},
            "required": ["query"],
        },
    }
    assert "search(query: string, limit?: integer|null, x?: any)\n" in render_chat([], [tool])


def test_missing_reasoning_renders_an_empty_think_block() -> None:
    text = render_chat([{"role": "assistant", "content": "Answer: 1"}])
    assert text == "<|im_start|>assistant\n<think>\n\n</think>\nAnswer: 1<|im_end|>\n"


@pytest.mark.parametrize(
    "message",
    [
        {"role": "robot", "content": "x"},
        {"role": "user", "content": None},
        {"role": "user", "content": ["x"]},
    ],
)
def test_unrenderable_messages_raise(message: dict[str, object]) -> None:
    with pytest.raises(ChatFormatError):
        render_chat([message])
