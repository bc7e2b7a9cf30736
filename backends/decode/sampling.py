"""Per-request sampling: the validated parameters and the sampler that turns one position's logits into a token.

The sampler's pipeline for logits `[V]` (computed in float32):
  1. suppress: ids the decoder must never emit (PIPO: PAD) get -inf;
  2. presence penalty: every id among the real tokens generated so far loses `presence_penalty`;
  3. the reported log-prob of the chosen token is `log_softmax` of this processed vector: temperature 1,
     after suppression and penalty, before top-k/top-p truncation, so it is comparable across temperatures;
  4. temperature 0: argmax (ties go to the lowest id); otherwise divide by the temperature, keep the top-k
     logits (ties with the k-th are kept), keep the smallest nucleus whose mass reaches top_p, and draw once
     with `torch.multinomial` from the request's generator.
"""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipo_agent.backends.decode.errors import SamplingParamsError

MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed accepts unsigned 64-bit seeds

_VALID: dict[str, str] = {
    "temperature": "a finite float >= 0 (0 = greedy)",
    "top_p": "a float in (0, 1]",
    "top_k": "an int >= 0 (0 = off)",
    "presence_penalty": "a float in [-2, 2]",
    "seed": f"None or an int in [0, {MAX_SEED}]",
    "stop": "a sequence of non-empty strings",
    "max_new_tokens": "an int >= 1 (real tokens, PAD excluded)",
    "tau": "a finite float in [-1, 1] (< 0 always commits, >= 1 never commits)",
    "logprobs": "a bool",
}


def _params_error(exc: ValidationError) -> SamplingParamsError:
    problems = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"]) or "<params>"
        valid = _VALID.get(str(err["loc"][0]) if err["loc"] else "", "see SamplingParams")
        problems.append(f"{field}={err.get('input')!r}: {err['msg']}; valid: {valid}")
    return SamplingParamsError("invalid sampling parameters: " + " | ".join(problems))


class SamplingParams(BaseModel):
    """Per-request sampling and PIPO gating. Invalid values raise `SamplingParamsError` naming the field."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    stop: tuple[str, ...] = ()
    max_new_tokens: int = Field(256, ge=1)
    tau: float = Field(0.9, ge=-1.0, le=1.0)
    logprobs: bool = False

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _params_error(exc) from exc

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> "SamplingParams":
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            raise _params_error(exc) from exc

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> "SamplingParams":
        try:
            return super().model_validate_json(json_data, **kwargs)
        except ValidationError as exc:
            raise _params_error(exc) from exc

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> "SamplingParams":
        """Unlike pydantic's default, a copy with updates is validated again."""
        if not update:
            return super().model_copy(deep=deep)
        return type(self)(**{**self.model_dump(), **update})

    @field_validator("stop")
    @classmethod
    def _non_empty_stops(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not s for s in value):
            raise ValueError("stop strings must be non-empty")
        return value

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class SampledToken:
    token_id: int
    logprob: float  # log-prob under the processed distribution at temperature 1 (see the module docstring)


def new_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """The request's generator: seeded from `seed`, or from a non-deterministic source when None."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


class Sampler:
    """Samples one token per call; the caller owns the generator and the set of generated real tokens."""

    def __init__(self, params: SamplingParams, suppress_ids: Sequence[int] = ()) -> None:
        self.params = params
        self.suppress_ids = tuple(suppress_ids)

    def process(self, logits: torch.Tensor, seen: Collection[int]) -> torch.Tensor:
        """Suppression and presence penalty: `[V]` -> float32 `[V]` (the distribution log-probs refer to)."""
        out = logits.detach().float().clone()
        if self.suppress_ids:
            out[torch.tensor(self.suppress_ids, device=out.device)] = float("-inf")
        if seen and self.params.presence_penalty:
            out[torch.tensor(sorted(seen), device=out.device)] -= self.params.presence_penalty
        return out

    def sample(self, logits: torch.Tensor, seen: Collection[int], generator: torch.Generator) -> SampledToken:
        processed = self.process(logits, seen)
        if self.params.greedy:
            token = int(processed.argmax())
        else:
            scaled = processed / self.params.temperature
            scaled = _top_k(scaled, self.params.top_k)
            scaled = _top_p(scaled, self.params.top_p)
            token = int(torch.multinomial(scaled.softmax(-1), 1, generator=generator))
        logprob = float(processed.log_softmax(-1)[token])
        return SampledToken(token_id=token, logprob=logprob)


def _top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k == 0 or k >= logits.numel():
        return logits
    kth = logits.topk(k).values[-1]
    return logits.masked_fill(logits < kth, float("-inf"))


def _top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(descending=True)
    probs = sorted_logits.softmax(-1)
    mass_before = probs.cumsum(-1) - probs  # mass of the strictly more likely tokens
    sorted_logits = sorted_logits.masked_fill(mass_before >= top_p, float("-inf"))  # the top token survives
    return torch.full_like(logits, float("-inf")).scatter(0, order, sorted_logits)
