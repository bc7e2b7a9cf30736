"""The request bodies the server accepts: OpenAI's chat and completions schemas, plus PIPO's fields.

Unknown fields are errors (a typo must not be silently ignored); a few OpenAI fields that change nothing
here (``user``, ``metadata``, ``store``, ``parallel_tool_calls``) are accepted. Sampling ranges are checked
by the engine's :class:`~pipo_agent.backends.decode.sampling.SamplingParams`, the one place that knows them;
these models check types, lengths and the OpenAI-only rules (``n == 1``, no log-probs).

PIPO's extra body fields: ``tau`` (the draft commit threshold, in [-1, 1]) and ``task_type`` (selects the
server's per-task ``tau`` when ``tau`` is not given).
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "AssistantWire",
    "ChatCompletionRequest",
    "CompletionRequest",
    "FunctionDef",
    "NamedToolChoice",
    "StreamOptions",
    "SystemWire",
    "TextPart",
    "ToolDef",
    "ToolWire",
    "UserWire",
    "WireMessage",
    "WireToolCall",
    "text_of",
]

MAX_STOP_STRINGS = 16


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TextPart(_Wire):
    """A text content part; other part types (images, audio) are not supported by a text model."""

    type: Literal["text"]
    text: str


Content = str | list[TextPart]


def text_of(content: Content | None) -> str:
    """The text of a message's content (parts joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.text for part in content)


class WireFunctionCall(_Wire):
    name: str
    arguments: str = ""  # JSON text, as OpenAI sends it


class WireToolCall(_Wire):
    id: str
    type: Literal["function"] = "function"
    function: WireFunctionCall


class SystemWire(_Wire):
    role: Literal["system", "developer"]
    content: Content
    name: str | None = None


class UserWire(_Wire):
    role: Literal["user"]
    content: Content
    name: str | None = None


class AssistantWire(_Wire):
    role: Literal["assistant"]
    content: Content | None = None
    reasoning_content: str | None = None
    tool_calls: list[WireToolCall] | None = None
    name: str | None = None
    refusal: str | None = None


class ToolWire(_Wire):
    role: Literal["tool"]
    tool_call_id: str
    content: Content
    name: str | None = None


WireMessage = Annotated[SystemWire | UserWire | AssistantWire | ToolWire, Field(discriminator="role")]


class FunctionDef(_Wire):
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(_Wire):
    type: Literal["function"]
    function: FunctionDef


class _FunctionName(_Wire):
    name: str


class NamedToolChoice(_Wire):
    type: Literal["function"]
    function: _FunctionName


class StreamOptions(_Wire):
    include_usage: bool = False


class _Sampling(_Wire):
    """Fields shared by both endpoints."""

    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    tau: float | None = None
    task_type: str | None = Field(None, min_length=1, max_length=128)
    user: str | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"only n=1 is supported, got {value}")
        return value

    @field_validator("frequency_penalty")
    @classmethod
    def _no_frequency_penalty(cls, value: float | None) -> float | None:
        if value:
            raise ValueError("frequency_penalty is not supported (use presence_penalty, in [-2, 2])")
        return value

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings, got {len(value)}")
        return value

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class ChatCompletionRequest(_Sampling):
    messages: list[WireMessage] = Field(min_length=1)
    tools: list[ToolDef] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    parallel_tool_calls: bool | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("logprobs are not supported")
        return value

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    echo: bool = False
    logprobs: int | None = None

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError(f"give one prompt (a string, or a list of one string), got {len(value)}")
        return value

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, value: bool) -> bool:
        if value:
            raise ValueError("echo is not supported")
        return value

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: int | None) -> int | None:
        if value:
            raise ValueError("logprobs are not supported")
        return value

    @property
    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    @property
    def token_limit(self) -> int | None:
        return self.max_tokens
