"""The server's one typed configuration, built by the CLI (or a test) and validated before anything loads.

The server binds 127.0.0.1 by default. Any other address needs an API key: :class:`ServerConfig` refuses to
be built without one, so a server reachable from the network never runs open. The library never reads the
environment; the container's entrypoint turns its variables and secrets into command-line options.
"""

import ipaddress
from enum import StrEnum
from pathlib import Path
from typing import Final, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from pipo_agent.server.errors import ServerConfigError

__all__ = ["EngineKind", "EngineMode", "ServerConfig", "is_loopback"]

DEFAULT_MODEL_NAME: Final = "pipo-default"


class EngineKind(StrEnum):
    EMBEDDED = "embedded"  # the in-process engine (`pipo_agent.backends.engine`)
    SGLANG = "sglang"  # SGLang with the PIPO plugin (pipo_agent.backends.sglang), GPU or CPU


class EngineMode(StrEnum):
    PIPO = "pipo"  # the PIPO student (pairs in, pairs out)
    AR = "ar"  # its autoregressive teacher, for comparison


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname may resolve to anything


class ServerConfig(BaseModel):
    """Everything ``pipo-agent serve`` needs. Unknown keys are errors; see the CLI's ``--help`` for each field.

    Admission: at most ``max_num_seqs`` requests run in the engine and ``max_queue`` more wait; a request
    beyond that is answered 429 with ``Retry-After: retry_after_s`` instead of queueing without bound.
    ``task_taus`` maps a request's ``task_type`` to its ``tau`` when the request gives none.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)  # 0: any free port
    api_key: SecretStr | None = None
    engine: EngineKind = EngineKind.EMBEDDED
    model_dir: Path | None = None  # None: the shipped default model
    served_model_name: str = Field(DEFAULT_MODEL_NAME, min_length=1)
    mode: EngineMode = EngineMode.PIPO
    device: str = "cpu"
    threads: int | None = Field(None, ge=1)
    max_num_seqs: int = Field(64, ge=1)
    max_queue: int = Field(64, ge=0)
    kv_cache_bytes: int = Field(256 * 2**20, ge=1)
    max_model_pairs: int | None = Field(None, ge=1)
    default_max_tokens: int = Field(1024, ge=1)
    max_tokens_limit: int = Field(8192, ge=1)
    default_temperature: float = Field(0.0, ge=0.0)
    default_tau: float = Field(0.9, ge=-1.0, le=1.0)
    task_taus: dict[str, float] = Field(default_factory=dict)
    max_body_bytes: int = Field(4 * 2**20, ge=1024)
    grace_period_s: float = Field(30.0, ge=0.0)
    retry_after_s: int = Field(1, ge=0)
    log_level: str = "info"

    @classmethod
    def build(cls, **values: object) -> Self:
        """The config, or a :class:`ServerConfigError` that lists every bad field."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            )
            raise ServerConfigError(f"invalid server configuration: {problems}") from exc

    @model_validator(mode="after")
    def _checked(self) -> Self:
        if not is_loopback(self.host) and (self.api_key is None or not self.api_key.get_secret_value()):
            raise ValueError(
                f"--host {self.host} is reachable from other machines, so an API key is required: pass "
                "--api-key-file (or --api-key), or bind 127.0.0.1"
            )
        bad = {name: tau for name, tau in self.task_taus.items() if not -1.0 <= tau <= 1.0}
        if bad:
            raise ValueError(f"task_taus must lie in [-1, 1], got {bad}")
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError(
                f"default_max_tokens={self.default_max_tokens} is over max_tokens_limit={self.max_tokens_limit}"
            )
        return self

    @property
    def max_admitted(self) -> int:
        """Requests admitted at once: running plus queued."""
        return self.max_num_seqs + self.max_queue

    def tau_for(self, task_type: str | None) -> float:
        """The ``tau`` of a request that sets none: its task type's, else the default."""
        if task_type is not None and task_type in self.task_taus:
            return self.task_taus[task_type]
        return self.default_tau

    def summary(self) -> dict[str, object]:
        """The settings without the key (``api_key`` says only whether one is set)."""
        data = self.model_dump(mode="json", exclude={"api_key"})
        data["api_key"] = "set" if self.api_key is not None else "none"
        return data
