"""A minimal synchronous multi-turn tool loop over one decoder (the anyio agent lives in `pipo_agent`).

Each turn renders the conversation with the tokenizer's chat template (generation prompt
`<|im_start|>assistant\\n<think>\\n`), streams one assistant turn from `decoder.stream`, parses it and runs
its tool calls (see :mod:`~pipo_agent.backends.eval.tool_calls`). A turn without a tool call ends the loop
(the final answer, or a turn cut off by `max_new_tokens`). Whatever the model writes, the loop does not
raise: invalid JSON, an unknown tool or bad arguments become a tool message starting with `Error:`.

History decisions: well-formed calls (a JSON object with a string `name`) go into the assistant message's
`tool_calls`; a block that is not one stays verbatim in its `content`, so the model sees what it wrote next
to the error. With a `seed`, turn `i` samples with `seed + i`, so turns are not copies of one random stream.
"""

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from transformers import PreTrainedTokenizerBase

from pipo_agent.backends.decode import (
    ContextLengthError,
    DecodeStats,
    DecodeStep,
    FinishReason,
    SamplingParams,
)
from pipo_agent.backends.decode.sampling import MAX_SEED
from pipo_agent.backends.eval.streaming import Channel, ChannelSplitter, IncrementalDetokenizer
from pipo_agent.backends.eval.tool_calls import (
    BUILTIN_TOOLS,
    ParsedTurn,
    Tool,
    ToolCall,
    as_tool,
    parse_turn,
    run_tool,
)
from pipo_agent.tasks import ENDOFTEXT_TOKEN, SYSTEM_PROMPT, TOOL_CALL_END, TOOL_CALL_START


class StreamingDecoder(Protocol):
    def stream(self, prompt_ids: Sequence[int], params: SamplingParams) -> Iterator[DecodeStep]: ...


# ---- events for streaming consumers ----


@dataclass(frozen=True)
class ReasoningDelta:
    turn: int
    text: str


@dataclass(frozen=True)
class TextDelta:
    turn: int
    text: str


@dataclass(frozen=True)
class ToolCallEvent:
    turn: int
    call: ToolCall


@dataclass(frozen=True)
class ToolResultEvent:
    turn: int
    call_id: str
    name: str | None
    content: str
    is_error: bool


@dataclass(frozen=True)
class TurnEnd:
    turn: int
    stats: DecodeStats
    finish_reason: FinishReason


LoopEvent = ReasoningDelta | TextDelta | ToolCallEvent | ToolResultEvent | TurnEnd


# ---- results ----


class LoopStop(StrEnum):
    ANSWERED = "answered"  # a turn without tool calls that ended with EOS (or a stop string)
    TRUNCATED = "truncated"  # a turn without tool calls cut off by max_new_tokens
    MAX_TURNS = "max_turns"
    CONTEXT_LENGTH = "context_length"  # the next prompt did not fit the decoder's context


@dataclass(frozen=True)
class TurnRecord:
    index: int
    prompt_ids: tuple[int, ...]  # as given to the decoder (before PIPO's pair padding)
    steps: tuple[DecodeStep, ...]
    token_ids: tuple[int, ...]  # generated real tokens: no PAD, no EOS
    text: str
    finish_reason: FinishReason
    stats: DecodeStats


@dataclass(frozen=True)
class LoopStats:
    turns: int
    steps: int
    tokens: int  # real tokens, the EOS of each turn included
    drafts_proposed: int
    drafts_committed: int
    decode_s: float  # summed over turns: request start to last step
    tool_s: float
    ttft_s: float | None  # of the first turn
    tpot_s: float | None  # sum of (last - first step time) / sum of (tokens - 1), over turns

    @property
    def tokens_per_step(self) -> float:
        return self.tokens / self.steps if self.steps else 0.0

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.decode_s if self.decode_s > 0 else None

    @property
    def commit_rate(self) -> float | None:
        return self.drafts_committed / self.drafts_proposed if self.drafts_proposed else None


@dataclass(frozen=True)
class LoopResult:
    messages: list[dict[str, Any]]
    final_text: str  # content of the last assistant turn (holds the `Answer:` line)
    turns: tuple[TurnRecord, ...]
    tool_calls: tuple[tuple[ToolCall, ToolResultEvent], ...]
    stats: LoopStats
    stop: LoopStop


# ---- the loop ----


def _assistant_message(parsed: ParsedTurn) -> dict[str, Any]:
    malformed = [f"{TOOL_CALL_START}\n{c.raw}\n{TOOL_CALL_END}" for c in parsed.calls if c.error]
    content = "\n".join([parsed.content, *malformed] if parsed.content else malformed)
    message: dict[str, Any] = {"role": "assistant", "reasoning_content": parsed.reasoning, "content": content}
    calls = [
        {
            "id": c.id,
            "type": "function",
            "function": {
                "name": c.name,
                # The chat template inserts string arguments verbatim, so non-objects go in as JSON text.
                "arguments": c.arguments
                if isinstance(c.arguments, dict)
                else json.dumps(c.arguments, ensure_ascii=False),
            },
        }
        for c in parsed.calls
        if c.error is None
    ]
    if calls:
        message["tool_calls"] = calls
    return message


def _turn_stats(steps: Sequence[DecodeStep], pad_token_id: int | None) -> DecodeStats:
    tokens = sum(1 for s in steps for t in s.slots if t != pad_token_id)
    return DecodeStats.from_steps(steps, tokens)


def _stream_turn(
    decoder: StreamingDecoder,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: list[int],
    params: SamplingParams,
    index: int,
    emit: Callable[[LoopEvent], None],
) -> TurnRecord:
    pad = getattr(decoder, "pad_token_id", None)
    hidden = {pad, tokenizer.pad_token_id, tokenizer.eos_token_id}
    hidden.add(tokenizer.convert_tokens_to_ids(ENDOFTEXT_TOKEN))
    detok = IncrementalDetokenizer(lambda ids: tokenizer.decode(ids, skip_special_tokens=False))
    splitter = ChannelSplitter()
    steps = []

    def forward(pieces: list[tuple[Channel, str]]) -> None:
        for channel, text in pieces:
            emit(ReasoningDelta(index, text) if channel is Channel.REASONING else TextDelta(index, text))

    for step in decoder.stream(prompt_ids, params):
        steps.append(step)
        forward(splitter.feed(detok.push([t for t in step.slots if t not in hidden])))
    forward(splitter.feed(detok.flush()) + splitter.flush())
    finish = steps[-1].finish_reason
    assert finish is not None
    stats = _turn_stats(steps, pad)
    emit(TurnEnd(index, stats, finish))
    return TurnRecord(index, tuple(prompt_ids), tuple(steps), tuple(detok.ids), detok.text, finish, stats)


def _aggregate(turns: Sequence[TurnRecord], tool_s: float) -> LoopStats:
    stats = [t.stats for t in turns]
    tokens = sum(s.tokens for s in stats)
    after_first = sum(s.tokens - 1 for s in stats if s.tokens > 1)
    tail_s = sum(t.steps[-1].elapsed_s - t.steps[0].elapsed_s for t in turns)
    return LoopStats(
        turns=len(turns),
        steps=sum(s.steps for s in stats),
        tokens=tokens,
        drafts_proposed=sum(s.drafts_proposed for s in stats),
        drafts_committed=sum(s.drafts_committed for s in stats),
        decode_s=sum(t.steps[-1].elapsed_s for t in turns),
        tool_s=tool_s,
        ttft_s=stats[0].ttft_s if stats else None,
        tpot_s=tail_s / after_first if after_first else None,
    )


def solve_with_tools(
    decoder: StreamingDecoder,
    tokenizer: PreTrainedTokenizerBase,
    question: str,
    tools: Sequence[Tool | Callable[..., str]] = BUILTIN_TOOLS,
    params: SamplingParams | None = None,
    max_turns: int = 8,
    on_event: Callable[[LoopEvent], None] | None = None,
    system_prompt: str | None = SYSTEM_PROMPT,
) -> LoopResult:
    """Generate, parse and run tools turn by turn until a turn has no tool call or `max_turns` turns."""
    if max_turns < 1:
        raise ValueError(f"max_turns must be >= 1, got {max_turns}")
    params = params if params is not None else SamplingParams()
    registry = {t.name: t for t in map(as_tool, tools)}
    schemas: list[dict[str, Any] | Callable[..., Any]] = [dict(t.schema) for t in registry.values()]
    emit = on_event if on_event is not None else (lambda event: None)
    messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": question})
    turns: list[TurnRecord] = []
    calls: list[tuple[ToolCall, ToolResultEvent]] = []
    tool_s, final_text, stop = 0.0, "", LoopStop.MAX_TURNS
    for index in range(max_turns):
        prompt = tokenizer.apply_chat_template(
            messages, tools=schemas or None, add_generation_prompt=True, tokenize=False
        )
        prompt_ids = list(tokenizer(str(prompt), add_special_tokens=False)["input_ids"])
        turn_params = params
        if params.seed is not None:
            turn_params = params.model_copy(update={"seed": (params.seed + index) % (MAX_SEED + 1)})
        try:
            turn = _stream_turn(decoder, tokenizer, prompt_ids, turn_params, index, emit)
        except ContextLengthError:
            stop = LoopStop.CONTEXT_LENGTH
            break
        turns.append(turn)
        parsed = parse_turn(turn.text, first_call_id=len(calls) + 1)
        message = _assistant_message(parsed)
        messages.append(message)
        final_text = message["content"]
        for call in parsed.calls:
            emit(ToolCallEvent(index, call))
            start = time.perf_counter()
            content, is_error = run_tool(call, registry)
            tool_s += time.perf_counter() - start
            result = ToolResultEvent(index, call.id, call.name, content, is_error)
            emit(result)
            calls.append((call, result))
            messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": content})
        if not parsed.calls:
            finished = turn.finish_reason is FinishReason.STOP
            stop = LoopStop.ANSWERED if finished else LoopStop.TRUNCATED
            break
    return LoopResult(messages, final_text, tuple(turns), tuple(calls), _aggregate(turns, tool_s), stop)
