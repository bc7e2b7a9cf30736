"""The HTTP backend's one frozen configuration."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["HttpBackendConfig"]


class HttpBackendConfig(BaseModel):
    """Where the OpenAI-compatible server is and how patiently to talk to it.

    ``base_url`` ends before ``/chat/completions`` (e.g. ``http://127.0.0.1:8000/v1``). ``read_timeout_s``
    bounds the wait for each piece of the stream (an idle timeout, reset by every chunk), not the whole turn.
    Failures to connect and answers 429/500/502/503/504 are retried up to ``max_retries`` times, after
    ``Retry-After`` when the server sends one (capped at ``max_retry_after_s``), else after an exponential
    backoff from ``backoff_initial_s`` doubling to ``backoff_max_s``, less up to ``jitter`` of it at random.
    A stream that broke after its first event is not retried: its events were already delivered.
    ``extra_body`` is merged into every request (server-specific fields).
    ``dialect`` names how the server takes PIPO's per-request fields: ``"pipo-agent"`` (``pipo-agent serve``)
    takes ``tau`` and ``task_type`` as top-level fields; ``"sglang"`` (``pipo-agent serve --engine sglang``)
    takes ``custom_params: {"tau": ...}`` and has no task types (the agent's per-task tau still reaches it).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    base_url: str = Field(min_length=1)
    model: str = Field(min_length=1)
    api_key: SecretStr | None = None
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(120.0, gt=0)
    write_timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(4, ge=0)
    backoff_initial_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(8.0, ge=0)
    max_retry_after_s: float = Field(30.0, ge=0)
    jitter: float = Field(0.2, ge=0, le=1)
    extra_body: dict[str, Any] = Field(default_factory=dict)
    dialect: Literal["pipo-agent", "sglang"] = "pipo-agent"
