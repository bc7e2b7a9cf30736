"""The engine's configuration: one frozen object, built at the entry point. Every count is in PAIRS.

One pair = two token slots = one backbone position = one KV slot (Part B §4.5). `max_model_pairs` is the
backbone's context in positions, so a model with 32,768 positions serves up to 65,536 slots.
"""

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipo_agent.backends.engine.errors import EngineConfigError

MAX_BLOCK_SIZE = 1024

_VALID: dict[str, str] = {
    "block_size": f"an int in [1, {MAX_BLOCK_SIZE}] (pairs per KV block)",
    "num_blocks": "an int >= 1, with num_blocks * block_size >= max_model_pairs",
    "max_num_seqs": "an int >= 1 (sequences running at once)",
    "max_num_batched_pairs": "an int >= max_num_seqs (pairs computed in one step; a decode step takes one per sequence)",
    "chunk_pairs": "an int in [1, max_num_batched_pairs] (pairs of one prompt per prefill step)",
    "max_model_pairs": "an int >= 1 (the backbone's context, in pairs)",
    "enable_prefix_caching": "a bool",
}


def _config_error(exc: ValidationError) -> EngineConfigError:
    problems = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"])
        if field:
            problems.append(f"{field}={err.get('input')!r}: {err['msg']}; valid: {_VALID.get(field, '?')}")
        else:  # a cross-field check: its message names the fields and ranges itself
            problems.append(str(err["msg"]).removeprefix("Value error, "))
    return EngineConfigError("invalid engine config: " + " | ".join(problems))


class EngineConfig(BaseModel):
    """Sizes of the KV pool and of a step. Invalid values raise `EngineConfigError` naming the valid range."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    block_size: int = Field(16, ge=1, le=MAX_BLOCK_SIZE)
    num_blocks: int = Field(ge=1)
    max_num_seqs: int = Field(64, ge=1)
    max_num_batched_pairs: int = Field(2048, ge=1)
    chunk_pairs: int = Field(512, ge=1)
    max_model_pairs: int = Field(ge=1)
    enable_prefix_caching: bool = True

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _config_error(exc) from exc

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = []
        if self.max_num_batched_pairs < self.max_num_seqs:
            problems.append(
                f"max_num_batched_pairs={self.max_num_batched_pairs} < max_num_seqs={self.max_num_seqs}; "
                f"valid: {_VALID['max_num_batched_pairs']}"
            )
        if self.chunk_pairs > self.max_num_batched_pairs:
            problems.append(
                f"chunk_pairs={self.chunk_pairs} > max_num_batched_pairs={self.max_num_batched_pairs}; "
                f"valid: {_VALID['chunk_pairs']}"
            )
        # A sequence at the context limit must fit the pool on its own, or it could never run again after
        # a preemption.
        if self.num_blocks * self.block_size < self.max_model_pairs:
            problems.append(
                f"num_blocks * block_size = {self.num_blocks} * {self.block_size} < "
                f"max_model_pairs={self.max_model_pairs}; valid: {_VALID['num_blocks']}"
            )
        if problems:
            raise ValueError(" | ".join(problems))
        return self

    @property
    def num_kv_slots(self) -> int:
        """Pair slots in the KV pool (each one backbone position, for the backbone and the MTP layer alike)."""
        return self.num_blocks * self.block_size
