"""What decoders produce (steps, results, statistics) and the output bookkeeping every decoder shares.

`OutputState` applies the stop rules, in the order tokens are sampled:
  - an EOS id finishes with "stop"; it goes into `slots` but not into `token_ids` or the text;
  - each real token is appended to `token_ids`; then, with stop strings, the text of `token_ids` is searched and a
    match finishes with "stop": `token_ids` keeps the shortest prefix whose text contains a stop string (the token
    that completes it included) and `text` is cut just before the earliest match;
  - reaching `max_new_tokens` real tokens finishes with "length".
PAD is bookkept by the decoder (`push_pad`) and never counts, stops or reaches the text.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import torch

from pipo_agent.backends.decode.errors import ContextLengthError, PromptError, SamplingParamsError
from pipo_agent.backends.decode.sampling import SamplingParams

Detokenize = Callable[[list[int]], str]


class FinishReason(StrEnum):
    STOP = "stop"  # EOS or a stop string
    LENGTH = "length"  # max_new_tokens real tokens


@dataclass(frozen=True)
class DecodeStep:
    """One backbone step (index 0 is the prefill)."""

    index: int
    position: int  # sequence position whose hidden state gave token1: a pair for PIPO, a token for AR
    token1: int
    draft: int | None  # the sampled MTP draft, committed or not; None when phase 2 did not run
    token2: int | None  # the committed draft; None when rejected, skipped or dropped
    conf: float | None  # sigmoid of the confidence logit; None when phase 2 did not run
    committed: bool
    slots: tuple[
        int, ...
    ]  # appended to the stream: (t1, t2-or-PAD), or (t1,) when the request finished at t1
    logprob1: float | None  # with params.logprobs: log-prob of token1 (see sampling)
    logprob2: float | None  # with params.logprobs: log-prob of the draft, committed or not
    finish_reason: FinishReason | None  # set on the last step only
    elapsed_s: float  # wall time from the request's start to this step's tokens being ready
    logits1: torch.Tensor | None = (
        None  # [V] raw LM-head logits for token1 (decoder built with record_logits)
    )
    logits2: torch.Tensor | None = None  # [V] raw MTP logits for the draft


@dataclass(frozen=True)
class DecodeStats:
    steps: int
    drafts_proposed: int
    drafts_committed: int
    tokens: int  # real tokens in `slots` (the stopping EOS included)
    tokens_per_step: float
    ttft_s: float  # request start -> first step's tokens
    tpot_s: float | None  # (last step - first step) / (tokens - 1); None below 2 tokens

    @classmethod
    def from_steps(cls, steps: "Sequence[DecodeStep]", tokens: int) -> "DecodeStats":
        """Statistics of a non-empty run of steps that produced `tokens` real tokens."""
        ttft = steps[0].elapsed_s
        return cls(
            steps=len(steps),
            drafts_proposed=sum(s.draft is not None for s in steps),
            drafts_committed=sum(s.committed for s in steps),
            tokens=tokens,
            tokens_per_step=tokens / len(steps),
            ttft_s=ttft,
            tpot_s=(steps[-1].elapsed_s - ttft) / (tokens - 1) if tokens > 1 else None,
        )


@dataclass(frozen=True)
class DecodeResult:
    token_ids: tuple[int, ...]  # real generated tokens: no PAD, no stopping EOS, nothing after a stop string
    text: str | None  # detokenized token_ids, cut before a stop string; None without a detokenizer
    slots: tuple[int, ...]  # the exact stream appended after `padded_prompt_ids`, PADs included
    finish_reason: FinishReason
    stop_token_id: int | None  # the EOS id that finished the request, if one did
    padded_prompt_ids: tuple[int, ...]
    stats: DecodeStats
    steps: tuple[DecodeStep, ...]
    token_logprobs: tuple[float, ...] | None  # aligned with token_ids, when params.logprobs


def check_prompt(prompt_ids: Sequence[int], vocab_size: int) -> list[int]:
    ids = [int(t) for t in prompt_ids]
    if not ids:
        raise PromptError("the prompt is empty; a decoder needs at least one token")
    bad = [t for t in ids if not 0 <= t < vocab_size]
    if bad:
        raise PromptError(f"prompt token ids {bad[:5]} are outside the vocabulary [0, {vocab_size})")
    return ids


def check_context(positions: int, max_new_tokens: int, limit: int | None, unit: str) -> None:
    if limit is not None and positions + max_new_tokens > limit:
        raise ContextLengthError(
            f"prompt of {positions} {unit} + max_new_tokens={max_new_tokens} exceeds the context of "
            f"{limit} {unit} (max_position_embeddings)"
        )


class OutputState:
    """The generated stream of one request and its stop rules (see the module docstring)."""

    def __init__(
        self, params: SamplingParams, eos_token_ids: Sequence[int], detokenize: Detokenize | None
    ) -> None:
        if params.stop and detokenize is None:
            raise SamplingParamsError("stop strings need a decoder built with a detokenize function")
        self.params = params
        self.eos_token_ids = frozenset(eos_token_ids)
        self.detokenize = detokenize
        self.start = time.perf_counter()
        self.slots: list[int] = []
        self.token_ids: list[int] = []
        self.logprobs: list[float] = []
        self.seen: set[int] = set()  # real tokens, for the presence penalty
        self.finish_reason: FinishReason | None = None
        self.stop_token_id: int | None = None
        self._stop_text: str | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def push(self, token_id: int, logprob: float) -> bool:
        """Append a real token; True when the request is finished."""
        assert not self.finished
        self.slots.append(token_id)
        if token_id in self.eos_token_ids:
            self.finish_reason, self.stop_token_id = FinishReason.STOP, token_id
            return True
        self.token_ids.append(token_id)
        self.logprobs.append(logprob)
        self.seen.add(token_id)
        if self._matches_stop():
            self.finish_reason = FinishReason.STOP
        elif len(self.token_ids) >= self.params.max_new_tokens:
            self.finish_reason = FinishReason.LENGTH
        return self.finished

    def push_pad(self, pad_token_id: int) -> None:
        assert not self.finished
        self.slots.append(pad_token_id)

    def _matches_stop(self) -> bool:
        if not self.params.stop or self.detokenize is None:
            return False
        text = self.detokenize(list(self.token_ids))
        hits = [i for i in (text.find(s) for s in self.params.stop) if i >= 0]
        if not hits:
            return False
        self._stop_text = text[: min(hits)]
        return True

    def result(self, padded_prompt_ids: Sequence[int], steps: Sequence[DecodeStep]) -> DecodeResult:
        assert self.finish_reason is not None and steps
        tokens = len(self.token_ids) + (self.stop_token_id is not None)
        stats = DecodeStats.from_steps(steps, tokens)
        text = self._stop_text
        if text is None and self.detokenize is not None:
            text = self.detokenize(list(self.token_ids))
        return DecodeResult(
            token_ids=tuple(self.token_ids),
            text=text,
            slots=tuple(self.slots),
            finish_reason=self.finish_reason,
            stop_token_id=self.stop_token_id,
            padded_prompt_ids=tuple(padded_prompt_ids),
            stats=stats,
            steps=tuple(steps),
            token_logprobs=tuple(self.logprobs) if self.params.logprobs else None,
        )
