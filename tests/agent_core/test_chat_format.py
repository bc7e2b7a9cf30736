"""The PIPO text format: the prompt, and the incremental parser of a generated turn under any chunking."""

import itertools
import random
from collections.abc import Callable, Sequence

import pytest

from pipo_agent.backend import ReasoningDelta, TextDelta, ToolCallDelta
from pipo_agent.chat_format import ParsedEvent, StreamParser, parse_output, parse_tool_call, render_prompt
from pipo_agent.messages import AssistantMessage, InvalidToolCall, ToolCall, UserMessage, to_chat_dicts
from pipo_agent.tasks.chat_format import GENERATION_PROMPT, render_chat, render_message
from pipo_agent.tools import calculator_tool


def counter() -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"call_{next(numbers)}"


def merged(events: Sequence[ParsedEvent]) -> list[ParsedEvent]:
    """Adjacent reasoning (or text) deltas joined: the events' meaning, independent of chunking."""
    out: list[ParsedEvent] = []
    for event in events:
        last = out[-1] if out else None
        if isinstance(event, ReasoningDelta) and isinstance(last, ReasoningDelta):
            out[-1] = ReasoningDelta(text=last.text + event.text)
        elif isinstance(event, TextDelta) and isinstance(last, TextDelta):
            out[-1] = TextDelta(text=last.text + event.text)
        else:
            out.append(event)
    return out


def parse_in_chunks(text: str, cuts: Sequence[int], in_reasoning: bool = True) -> list[ParsedEvent]:
    parser = StreamParser(in_reasoning=in_reasoning, new_call_id=counter())
    bounds = [0, *sorted(cuts), len(text)]
    events: list[ParsedEvent] = []
    for start, end in itertools.pairwise(bounds):
        events += parser.feed(text[start:end])
    return events + parser.finish()


def test_render_prompt_is_render_chat_with_the_generation_prompt() -> None:
    messages = [UserMessage(content="What is 37 * 48?")]
    tools = [calculator_tool().schema]
    prompt = render_prompt(messages, tools)
    assert prompt == render_chat(to_chat_dicts(messages), tools=tools, add_generation_prompt=True)
    assert prompt.endswith(GENERATION_PROMPT)
    assert "calculator(expression: string) - Evaluate an arithmetic expression exactly." in prompt
    assert "# Tools" not in render_prompt(messages)


def test_a_canonical_turn_parses_into_reasoning_text_and_calls() -> None:
    output = (
        "Multiply first.\n</think>\nI will use the calculator.\n"
        '<tool_call>\n{"name": "calculator", "arguments": {"expression": "37 * 48"}}\n</tool_call>\n'
        "<tool_call>\n{oops}\n</tool_call>"
    )
    events = parse_output(output, new_call_id=counter())
    assert events[:2] == [
        ReasoningDelta(text="Multiply first."),
        TextDelta(text="I will use the calculator."),
    ]
    assert events[2] == ToolCallDelta(
        call=ToolCall(id="call_1", name="calculator", arguments={"expression": "37 * 48"})
    )
    assert isinstance(events[3], ToolCallDelta)
    invalid = events[3].call
    assert isinstance(invalid, InvalidToolCall)
    assert (invalid.id, invalid.raw) == ("call_2", "{oops}")
    assert "not valid JSON" in invalid.error
    assert len(events) == 4


def test_parsing_what_the_template_renders_gives_the_message_back() -> None:
    message = AssistantMessage(
        content="Checking.",
        reasoning="Two calls.",
        tool_calls=[
            ToolCall(id="call_1", name="lookup", arguments={"item": "apples"}),
            ToolCall(id="call_2", name="calculator", arguments={"expression": "2 * 3"}),
        ],
    )
    turn = render_message(to_chat_dicts([message])[0])
    output = turn.removeprefix(GENERATION_PROMPT).removesuffix("<|im_end|>\n")
    events = parse_output(output, new_call_id=counter())
    assert events == [
        ReasoningDelta(text="Two calls."),
        TextDelta(text="Checking."),
        *(ToolCallDelta(call=call) for call in message.tool_calls),
    ]


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("[1, 2]", 'a JSON object with a string "name"'),
        ('{"arguments": {}}', 'a JSON object with a string "name"'),
        ('{"name": 3}', 'a JSON object with a string "name"'),
        (
            '{"name": "f", "arguments": "x=1"}',
            'the "arguments" of a call to f must be a JSON object, got a string',
        ),
        ('{"name": "f", "arguments": [1]}', "got an array"),
        ('{"name": "f"', "not valid JSON"),
    ],
)
def test_malformed_calls_are_reported_not_raised(raw: str, error: str) -> None:
    call = parse_tool_call(raw, "call_9")
    assert isinstance(call, InvalidToolCall)
    assert error in call.error
    assert call.raw == raw


def test_missing_arguments_mean_no_arguments() -> None:
    assert parse_tool_call('{"name": "now"}', "c") == ToolCall(id="c", name="now", arguments={})


def test_a_turn_cut_off_keeps_what_it_has() -> None:
    assert parse_output("still thinking <thi") == [ReasoningDelta(text="still thinking <thi")]
    events = parse_output('done\n</think>\n<tool_call>\n{"name": "calc', new_call_id=counter())
    assert events[0] == ReasoningDelta(text="done")
    assert isinstance(events[1], ToolCallDelta)
    call = events[1].call
    assert isinstance(call, InvalidToolCall)
    assert call.raw == '{"name": "calc'
    assert "not closed" in call.error


def test_output_without_the_think_prefix_starts_as_text() -> None:
    events = parse_output("<think>\nhmm\n</think>\nHi", in_reasoning=False)
    assert events == [ReasoningDelta(text="hmm"), TextDelta(text="Hi")]


def test_reasoning_never_leaks_into_text_one_character_at_a_time() -> None:
    output = "a </thin b <tool_call> c\n</think>\nanswer </think> <thinking"
    events = parse_in_chunks(output, range(1, len(output)))
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert reasoning == "a </thin b <tool_call> c"
    assert text == "answer </think> <thinking"


FRAGMENTS = [
    "x",
    "word ",
    "\n",
    "\n\n",
    "<",
    "</",
    "<t",
    "<tool",
    "</think",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    '{"name": "f", "arguments": {"a": 1}}',
    '{"name": "g"}',
    "{broken",
    "ü€𝄞",
    " > ",
]


@pytest.mark.parametrize("seed", range(40))
def test_any_chunking_gives_the_same_events_as_the_whole_text(seed: int) -> None:
    rng = random.Random(seed)
    text = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 40)))
    in_reasoning = rng.random() < 0.8
    whole = parse_in_chunks(text, [], in_reasoning)
    assert merged(parse_in_chunks(text, range(1, len(text)), in_reasoning)) == merged(whole)
    for _ in range(25):
        cuts = (
            rng.sample(range(1, len(text)), k=rng.randint(0, min(8, len(text) - 1))) if len(text) > 1 else []
        )
        assert merged(parse_in_chunks(text, cuts, in_reasoning)) == merged(whole), (text, cuts)


def test_feeding_after_finish_is_a_programming_error() -> None:
    parser = StreamParser()
    parser.finish()
    with pytest.raises(RuntimeError, match="after finish"):
        parser.feed("x")
