"""Gold trajectories: correct answers, real tool results, well-formed turns, tool-use rules."""

import re
from typing import Any

import pytest

from pipo_agent.tasks import (
    SPECIAL_TOKENS,
    SYSTEM_PROMPT,
    Task,
    Trajectory,
    check,
    generate_tasks,
    render_chat,
    solve,
)
from pipo_agent.tools import calculator, lookup

FAMILIES = ["arithmetic", "conversion", "strings"]
TOOLS = {"calculator": calculator, "lookup": lookup}


def _gold(family: str, n: int = 120, seed: int = 11) -> list[tuple[Task, Trajectory]]:
    return [(task, solve(task)) for task in generate_tasks(family, n, seed)]


@pytest.mark.parametrize("family", FAMILIES)
def test_gold_answers_pass_and_wrong_answers_fail(family: str) -> None:
    for task, trajectory in _gold(family):
        assert trajectory.final_text == f"Answer: {task.answer}"
        assert check(task, trajectory.final_text)
        assert not check(task, "Answer: 12345678987654321")
        assert not check(task, trajectory.final_text + "x")
        assert not check(task, "no answer line")


@pytest.mark.parametrize("family", FAMILIES)
def test_tool_results_are_the_real_tools_outputs(family: str) -> None:
    for _, trajectory in _gold(family):
        calls: dict[str, dict[str, Any]] = {}
        for message in trajectory.messages:
            for call in message.get("tool_calls") or ():
                calls[call["id"]] = call["function"]
            if message["role"] == "tool":
                function = calls.pop(message["tool_call_id"])
                (argument,) = function["arguments"].values()
                assert message["name"] == function["name"]
                assert message["content"] == TOOLS[function["name"]](argument)
        assert not calls, "every tool call gets a response"


@pytest.mark.parametrize("family", FAMILIES)
def test_turn_structure(family: str) -> None:
    for _, trajectory in _gold(family, n=60):
        roles = [m["role"] for m in trajectory.messages]
        assert roles[:2] == ["system", "user"]
        assert trajectory.messages[0]["content"] == SYSTEM_PROMPT
        assert roles[-1] == "assistant"
        assert all(m["reasoning_content"] for m in trajectory.messages if m["role"] == "assistant")
        # Tool messages follow the assistant turn that asked for them, in call order.
        for index, message in enumerate(trajectory.messages):
            if message["role"] == "assistant" and message.get("tool_calls"):
                ids = [call["id"] for call in message["tool_calls"]]
                following = trajectory.messages[index + 1 : index + 1 + len(ids)]
                assert [m["tool_call_id"] for m in following] == ids
                assert message["content"] == ""


def test_tools_are_offered_for_arithmetic_and_conversion_only() -> None:
    for family in ("arithmetic", "conversion"):
        for _, trajectory in _gold(family, n=10):
            assert [t["function"]["name"] for t in trajectory.tools] == ["calculator", "lookup"]
    for _, trajectory in _gold("strings", n=20):
        assert trajectory.tools == ()
        assert trajectory.tool_calls == []


@pytest.mark.parametrize("family", ["arithmetic", "conversion"])
def test_calculator_only_for_products_of_two_numbers_at_least_ten(family: str) -> None:
    expression = re.compile(r"^(\d+) ([*/]) (\d+)$")
    for _, trajectory in _gold(family):
        for call in trajectory.tool_calls:
            if call["name"] != "calculator":
                continue
            match = expression.match(call["arguments"]["expression"])
            assert match, call
            left, op, right = int(match[1]), match[2], int(match[3])
            assert right >= 10 and (op == "/" or left >= 10)


@pytest.mark.parametrize("family", ["arithmetic", "conversion"])
def test_calls_are_sometimes_parallel_and_sometimes_sequential(family: str) -> None:
    widths = {
        len(m["tool_calls"])
        for _, trajectory in _gold(family, n=200)
        for m in trajectory.messages
        if m.get("tool_calls")
    }
    assert 1 in widths
    assert max(widths) >= 2


def test_conversion_always_looks_something_up() -> None:
    for _, trajectory in _gold("conversion"):
        assert any(call["name"] == "lookup" for call in trajectory.tool_calls)


def test_arithmetic_reasoning_writes_digit_by_digit_steps_and_a_check() -> None:
    for _, trajectory in _gold("arithmetic", n=60):
        reasoning = "\n".join(m["reasoning_content"] for m in trajectory.messages if m["role"] == "assistant")
        assert reasoning.startswith("I need to track the number of")
        assert "Plan:" in reasoning
        assert "\nCheck: " in reasoning
        for match in re.finditer(r"(\d+) \+ (\d+): .*? → (\d+)", reasoning):
            assert int(match[1]) + int(match[2]) == int(match[3])
        for match in re.finditer(r"(\d+) - (\d+): .*? → (\d+)", reasoning):
            assert int(match[1]) - int(match[2]) == int(match[3])


def test_strings_reasoning_walks_the_elements() -> None:
    for task, trajectory in _gold("strings", n=80):
        reasoning = trajectory.messages[-1]["reasoning_content"]
        if task.meta["op"] in ("reverse_list", "dedupe", "every_kth", "upper_join"):
            for index in range(1, len(task.meta["items"]) + 1):
                assert f"{index}: " in reasoning
        if task.meta["op"] == "count_letter":
            assert len(reasoning.splitlines()) == len(task.meta["items"]) + 2


def test_rendered_trajectory_contains_no_stray_special_tokens() -> None:
    """Task text never contains a special-token string, so the tokenizer cannot misread content."""
    for family in FAMILIES:
        for task, trajectory in _gold(family, n=40):
            for message in trajectory.messages:
                for key in ("content", "reasoning_content"):
                    assert not any(token in (message.get(key) or "") for token in SPECIAL_TOKENS), task


@pytest.mark.parametrize("family", FAMILIES)
def test_generation_prompt_is_a_prefix_of_every_assistant_turn(family: str) -> None:
    """Training cuts each assistant turn out as `render(history, gen=True)` + response; this must hold."""
    for _, trajectory in _gold(family, n=30):
        messages, tools = list(trajectory.messages), list(trajectory.tools)
        for index, message in enumerate(messages):
            if message["role"] == "assistant":
                prompt = render_chat(messages[:index], tools, add_generation_prompt=True)
                assert render_chat(messages[: index + 1], tools).startswith(prompt)
