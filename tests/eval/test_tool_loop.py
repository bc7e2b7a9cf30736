"""The tool loop on a scripted decoder (parsing, tool execution, errors, turn limit, streaming) and once end
to end on a tiny random PIPO model."""

import json
from typing import Any

import pytest

from pipo_agent.backends.decode import PipoReferenceDecoder, SamplingParams
from pipo_agent.backends.eval import (
    BUILTIN_TOOLS,
    ChannelSplitter,
    LoopEvent,
    LoopStop,
    ReasoningDelta,
    TextDelta,
    ToolCallEvent,
    ToolResultEvent,
    TurnEnd,
    parse_turn,
    solve_with_tools,
)
from pipo_agent.backends.eval.streaming import Channel
from pipo_agent.tasks import SYSTEM_PROMPT, render_chat
from pipo_agent.tools import calculator, lookup

QUESTION = "What is 37 * 48?"
CALL = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "37 * 48"}}\n</tool_call>'
ANSWER_TURN = ["The calculator gives 1776.\n</think>\nAnswer: 1776"]


def calls_turn(*blocks: str) -> list[str]:
    body = "\n".join(f"<tool_call>\n{b}\n</tool_call>" for b in blocks)
    return [f"I need a tool.\n</think>\n{body}"]


def collect(decoder: Any, tokenizer: Any, **kwargs: Any) -> tuple[Any, list[LoopEvent]]:
    events: list[LoopEvent] = []
    result = solve_with_tools(decoder, tokenizer, QUESTION, on_event=events.append, **kwargs)
    return result, events


def test_tool_call_runs_and_its_result_goes_back(scripted: Any, tokenizer: Any) -> None:
    decoder = scripted([[f"Multiply.\n</think>\n{CALL}"], ANSWER_TURN])
    result, events = collect(decoder, tokenizer)

    assert result.stop is LoopStop.ANSWERED
    assert result.final_text == "Answer: 1776"
    assistant, tool = result.messages[2], result.messages[3]
    assert assistant["reasoning_content"] == "Multiply."
    assert assistant["content"] == ""
    assert assistant["tool_calls"][0]["function"] == {
        "name": "calculator",
        "arguments": {"expression": "37 * 48"},
    }
    assert tool == {"role": "tool", "tool_call_id": "call_1", "name": "calculator", "content": "1776"}
    # The second prompt is the rendered history: the call and its result went back to the model.
    schemas = [dict(t.schema) for t in BUILTIN_TOOLS]
    expected = render_chat(result.messages[:4], schemas, add_generation_prompt=True)
    assert decoder.prompts[1] == tokenizer(expected, add_special_tokens=False)["input_ids"]
    assert result.messages[0] == {"role": "system", "content": SYSTEM_PROMPT}

    kinds = [type(e) for e in events if not isinstance(e, ReasoningDelta | TextDelta)]
    assert kinds == [TurnEnd, ToolCallEvent, ToolResultEvent, TurnEnd]
    result_event = next(e for e in events if isinstance(e, ToolResultEvent))
    assert (result_event.content, result_event.is_error) == ("1776", False)
    assert len(result.tool_calls) == 1 and result.stats.turns == 2


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ('{"name": "calculator", "arguments": {"expression": "1+1"}', "not valid JSON"),
        ('["calculator", "1+1"]', 'string "name"'),
        ('{"name": "weather", "arguments": {"city": "Paris"}}', "unknown tool 'weather'"),
        ('{"name": "calculator", "arguments": {"expr": "1+1"}}', "bad arguments for calculator"),
        ('{"name": "calculator", "arguments": {"expression": 5}}', "must be a string"),
        ('{"name": "calculator", "arguments": "1+1"}', "must be a JSON object"),
        ('{"name": "calculator", "arguments": {"expression": "1/0"}}', "zero"),
    ],
)
def test_bad_tool_calls_get_an_error_message_and_the_loop_goes_on(
    scripted: Any, tokenizer: Any, block: str, message: str
) -> None:
    decoder = scripted([calls_turn(block), ANSWER_TURN])
    result, _ = collect(decoder, tokenizer)

    assert result.stop is LoopStop.ANSWERED and len(decoder.prompts) == 2
    tool = result.messages[3]
    assert tool["role"] == "tool" and tool["content"].startswith("Error: ")
    assert message in tool["content"]
    assert result.tool_calls[0][1].is_error
    assistant = result.messages[2]
    if "tool_calls" not in assistant:  # malformed blocks stay verbatim in the content
        assert block in assistant["content"]
    # The history still renders (string arguments are inserted as JSON text).
    assert tokenizer.decode(decoder.prompts[1]).count("Error: ") == 1


def test_parallel_calls_each_get_a_tool_message(scripted: Any, tokenizer: Any) -> None:
    blocks = [
        json.dumps({"name": "lookup", "arguments": {"item": "pound in grams"}}),
        json.dumps({"name": "calculator", "arguments": {"expression": "2 * 3"}}),
    ]
    result, _ = collect(scripted([calls_turn(*blocks), ANSWER_TURN]), tokenizer)
    tools = [m for m in result.messages if m["role"] == "tool"]
    assert [m["content"] for m in tools] == [lookup("pound in grams"), calculator("2 * 3")]
    assert [m["tool_call_id"] for m in tools] == ["call_1", "call_2"]


def test_tools_can_be_given_as_the_builtin_functions(scripted: Any, tokenizer: Any) -> None:
    block = json.dumps({"name": "calculator", "arguments": {"expression": "37 * 48"}})
    decoder = scripted([calls_turn(block), ANSWER_TURN])
    result, _ = collect(decoder, tokenizer, tools=(calculator,))
    assert result.messages[3]["content"] == "1776"
    first_prompt = tokenizer.decode(decoder.prompts[0])
    assert "calculator(expression: string)" in first_prompt and "lookup(" not in first_prompt
    with pytest.raises(TypeError, match="not a built-in tool"):
        solve_with_tools(scripted([ANSWER_TURN]), tokenizer, QUESTION, tools=(len,))


def test_max_turns_is_respected(scripted: Any, tokenizer: Any) -> None:
    decoder = scripted([[f"Again.\n</think>\n{CALL}"]])  # always calls a tool
    result, events = collect(decoder, tokenizer, max_turns=3)
    assert result.stop is LoopStop.MAX_TURNS
    assert len(decoder.prompts) == 3 and result.stats.turns == 3
    assert sum(isinstance(e, TurnEnd) for e in events) == 3
    assert result.messages[-1]["role"] == "tool"
    with pytest.raises(ValueError, match="max_turns"):
        solve_with_tools(decoder, tokenizer, QUESTION, max_turns=0)


def test_stats_sum_over_turns(scripted: Any, tokenizer: Any) -> None:
    result, events = collect(scripted([[f"Multiply.\n</think>\n{CALL}"], ANSWER_TURN]), tokenizer)
    per_turn = [e.stats for e in events if isinstance(e, TurnEnd)]
    stats = result.stats
    assert stats.steps == sum(s.steps for s in per_turn)
    assert stats.tokens == sum(s.tokens for s in per_turn) == sum(len(t.token_ids) + 1 for t in result.turns)
    assert stats.drafts_committed == stats.drafts_proposed > 0
    assert stats.tokens_per_step == pytest.approx(stats.tokens / stats.steps)
    assert stats.commit_rate == 1.0


@pytest.mark.parametrize(
    "pieces",
    [
        ["I think 2 plus 2 is 4.\n</thi", "nk>\nAnswer: 4"],
        ["I think 2 plus 2 is 4.\n<", "/", "think", ">", "\n", "Answer: 4"],
        list("I think 2 plus 2 is 4.\n</think>\nAnswer: 4"),
    ],
    ids=["two-pieces", "tag-in-four", "char-by-char"],
)
def test_streamed_reasoning_never_leaks_into_text(scripted: Any, tokenizer: Any, pieces: list[str]) -> None:
    result, events = collect(scripted([pieces]), tokenizer)
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    text = [e.text for e in events if isinstance(e, TextDelta)]
    assert reasoning == "I think 2 plus 2 is 4."
    assert "".join(text) == "Answer: 4" == result.final_text
    assert all("think" not in t and "<" not in t for t in text)
    assert result.messages[-1]["reasoning_content"] == reasoning


def test_tool_call_json_is_not_streamed_as_text() -> None:
    splitter = ChannelSplitter()
    out = []
    for ch in f"plan\n</think>\nLet me compute.\n{CALL}\n{CALL}":
        out += splitter.feed(ch)
    out += splitter.flush()
    assert "".join(t for c, t in out if c is Channel.REASONING) == "plan"
    assert "".join(t for c, t in out if c is Channel.TEXT) == "Let me compute."


def test_parse_turn_edge_cases() -> None:
    cut = parse_turn("still thinking about it")
    assert (cut.reasoning, cut.content, cut.calls) == ("still thinking about it", "", ())
    unclosed = parse_turn('ok\n</think>\n<tool_call>\n{"name": "calculator"')
    assert unclosed.calls[0].error is not None and "not closed" in unclosed.calls[0].error
    answer = parse_turn("\n</think>\nAnswer: 7")
    assert (answer.reasoning, answer.content, answer.calls) == ("", "Answer: 7", ())


def test_runs_end_to_end_on_a_tiny_random_pipo(tiny_pipo: Any, tokenizer: Any) -> None:
    decoder = PipoReferenceDecoder(tiny_pipo)
    params = SamplingParams(temperature=1.0, seed=3, max_new_tokens=6, tau=0.5)
    result, events = collect(decoder, tokenizer, params=params, max_turns=2)
    assert result.stop in set(LoopStop)
    assert 1 <= result.stats.turns <= 2
    assert result.stats.steps == sum(len(t.steps) for t in result.turns)
    assert result.stats.tokens >= result.stats.steps
    assert result.messages[2]["role"] == "assistant"
    assert sum(isinstance(e, TurnEnd) for e in events) == result.stats.turns


def test_a_prompt_beyond_the_context_stops_the_loop(pipo_factory: Any, tokenizer: Any) -> None:
    decoder = PipoReferenceDecoder(pipo_factory(max_position_embeddings=16))
    result = solve_with_tools(decoder, tokenizer, QUESTION, params=SamplingParams(max_new_tokens=4))
    assert result.stop is LoopStop.CONTEXT_LENGTH and result.turns == ()
