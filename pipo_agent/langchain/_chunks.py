"""A turn's stream events as LangChain ``AIMessageChunk``s, and the metadata of a finished turn.

Format ``v0`` (LangChain's default): ``content`` is the answer text; reasoning goes to
``additional_kwargs["reasoning_content"]``, which ``content_blocks`` shows as a ``reasoning`` block; a tool
call is one ``tool_call_chunks`` entry with its whole arguments. Format ``v1`` (``output_version="v1"``):
``content`` is a list of standard blocks (``reasoning``, ``text``, ``tool_call_chunk``), each with an
``index`` that LangChain uses to merge chunks into blocks.

Every block gets the next index when its type changes, and each tool call gets one of its own, so blocks
never share an index. An invalid call's arguments are sent as a JSON *string* (LangChain re-parses merged
``tool_call_chunks`` and would otherwise accept a broken call's JSON as arguments); its error goes to
``response_metadata["tool_call_errors"]`` in the last chunk. Usage and the metadata come once, in the last
chunk (``chunk_position="last"``), so merged streams count tokens once.
"""

import json
from typing import Any, Final, assert_never

from langchain_core.messages import AIMessageChunk
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk

from pipo_agent.backend import FinishEvent, ReasoningDelta, StreamEvent, TextDelta, ToolCallDelta, UsageEvent
from pipo_agent.messages import FinishReason, InvalidToolCall, ToolCall, Usage

__all__ = ["ChunkBuilder", "response_metadata", "usage_metadata"]

PROVIDER: Final = "pipo"
_PIPO_STATS: Final = ("steps", "drafts_proposed", "drafts_committed", "tokens_per_step", "tau")


def usage_metadata(usage: Usage) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        output_token_details={"reasoning": usage.reasoning_tokens},
    )


def response_metadata(
    usage: Usage, finish_reason: FinishReason, *, model_name: str, attempts: int, task_type: str | None
) -> dict[str, Any]:
    """``model_name``, ``finish_reason``, how many tries the turn took, and PIPO's decode statistics
    (``steps``, ``drafts_proposed``, ``drafts_committed``, ``tokens_per_step``, ``tau``) when known."""
    meta: dict[str, Any] = {
        "model_name": model_name,
        "model_provider": PROVIDER,
        "finish_reason": finish_reason.value,
        "attempts": attempts,
    }
    if task_type is not None:
        meta["task_type"] = task_type
    for name in _PIPO_STATS:
        if (value := getattr(usage, name)) is not None:
            meta[name] = value
    return meta


class ChunkBuilder:
    """Builds the chunks of one turn; :meth:`add` returns ``None`` for events that carry no chunk yet."""

    def __init__(self, *, v1: bool, model_name: str, task_type: str | None) -> None:
        self._v1 = v1
        self._model_name = model_name
        self._task_type = task_type
        self._index = -1
        self._kind: str | None = None
        self._usage = Usage()
        self._errors: dict[str, str] = {}
        self.attempts = 1

    def add(self, event: StreamEvent) -> AIMessageChunk | None:
        if isinstance(event, ReasoningDelta):
            index = self._next("reasoning")
            if self._v1:
                return self._chunk({"type": "reasoning", "reasoning": event.text, "index": index})
            return AIMessageChunk(content="", additional_kwargs={"reasoning_content": event.text})
        if isinstance(event, TextDelta):
            index = self._next("text")
            if self._v1:
                return self._chunk({"type": "text", "text": event.text, "index": index})
            return AIMessageChunk(content=event.text)
        if isinstance(event, ToolCallDelta):
            return self._tool_call(event.call)
        if isinstance(event, UsageEvent):
            self._usage = event.usage
            return None
        if isinstance(event, FinishEvent):
            return self._last(event.finish_reason)
        assert_never(event)

    def _next(self, kind: str, *, new: bool = False) -> int:
        if new or kind != self._kind:
            self._index += 1
            self._kind = kind
        return self._index

    def _chunk(self, block: dict[str, Any], **fields: Any) -> AIMessageChunk:
        return AIMessageChunk(content=[block], response_metadata={"output_version": "v1"}, **fields)

    def _tool_call(self, call: ToolCall | InvalidToolCall) -> AIMessageChunk:
        index = self._next("tool_call_chunk", new=True)
        if isinstance(call, ToolCall):
            args = json.dumps(call.arguments, ensure_ascii=False)
        else:
            args = json.dumps(call.raw, ensure_ascii=False)  # a JSON string: never parsed as arguments
            self._errors[call.id] = call.error
        chunk = tool_call_chunk(name=call.name, args=args, id=call.id, index=index)
        if self._v1:
            return self._chunk({**chunk, "type": "tool_call_chunk"}, tool_call_chunks=[chunk])
        return AIMessageChunk(content="", tool_call_chunks=[chunk])

    def _last(self, finish_reason: FinishReason) -> AIMessageChunk:
        meta = response_metadata(
            self._usage,
            finish_reason,
            model_name=self._model_name,
            attempts=self.attempts,
            task_type=self._task_type,
        )
        if self._errors:
            meta["tool_call_errors"] = dict(self._errors)
        if self._v1:
            meta["output_version"] = "v1"
        return AIMessageChunk(
            content=[] if self._v1 else "",
            usage_metadata=usage_metadata(self._usage),
            response_metadata=meta,
            chunk_position="last",
        )
