"""Adaptive PIPO draft thresholds: one ``tau`` per task type, tuned from the outcomes of its runs.

PIPO commits a drafted token when its confidence reaches ``tau``: a lower ``tau`` commits more drafts (more
tokens per backbone step, so faster), a higher one commits fewer (closer to plain autoregressive decoding,
so safer). :class:`ThresholdPolicy` keeps ``tau`` per task type in the store's ``task_profiles`` and moves it
after every run, additive-increase/additive-decrease style (the rule TCP uses to probe for bandwidth):

- **success** (answered, no mistaken tool call): lower ``tau`` by ``success_step`` to probe for speed, unless
  the run already committed at least ``saturated_commit_rate`` of its drafts, since then a lower ``tau``
  cannot commit more;
- **failure** (cut off by max_tokens, mistaken tool calls, out of steps, retries or token budget): raise
  ``tau`` by the larger ``failure_step``, since a garbled or rambling output is what bad drafts look like,
  and backing off fast is cheaper than repeating failures;
- **neutral** (a timeout or a cancellation): say nothing about ``tau``; only the draft counters change.

``tau`` stays within ``[min_tau, max_tau]``. With steps ``s`` (success) and ``f`` (failure), ``tau`` is
stable where failures are ``s / (s + f)`` of the runs (about 9 % with the defaults): above that rate it
climbs toward safety, below it drifts toward speed. A run whose request set ``tau`` explicitly still counts
(drafts, successes, failures) but does not move the profile's ``tau``. The counters change atomically in
the store; ``tau`` itself is last-writer-wins, so two runs finishing at the same moment may apply one step.
"""

import re
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipo_agent.messages import Usage
from pipo_agent.run_events import RunResult, StopReason
from pipo_agent.run_store import StoreCaller

if TYPE_CHECKING:
    from pipo_agent.memory import MemoryStore, TaskProfile, ThreadedMemoryStore

__all__ = ["DEFAULT_TASK_TYPE", "RunOutcome", "ThresholdPolicy", "infer_task_type", "outcome_of"]

DEFAULT_TASK_TYPE: Final = "default"


class RunOutcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"  # says nothing about tau: a timeout or a cancellation


_FAILURES: Final = frozenset(
    {StopReason.TRUNCATED, StopReason.MAX_STEPS, StopReason.TOKEN_BUDGET, StopReason.TOOL_RETRIES}
)


def outcome_of(result: RunResult) -> RunOutcome:
    """What a run says about its ``tau`` (see the module docstring)."""
    if result.stop_reason is StopReason.ANSWERED:
        return RunOutcome.FAILURE if result.tool_mistakes else RunOutcome.SUCCESS
    return RunOutcome.FAILURE if result.stop_reason in _FAILURES else RunOutcome.NEUTRAL


class ThresholdPolicy(BaseModel):
    """The adaptation rule's settings; :meth:`next_tau` is the rule, :meth:`choose` / :meth:`record` keep it
    in the store."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    initial_tau: float = 0.9
    min_tau: float = 0.5
    max_tau: float = 0.99
    success_step: float = Field(default=0.005, ge=0.0)
    failure_step: float = Field(default=0.05, ge=0.0)
    saturated_commit_rate: float = Field(default=0.98, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not -1.0 <= self.min_tau <= self.initial_tau <= self.max_tau <= 1.0:
            raise ValueError(
                "need -1 <= min_tau <= initial_tau <= max_tau <= 1, got "
                f"{self.min_tau}, {self.initial_tau}, {self.max_tau}"
            )
        return self

    def clamp(self, tau: float) -> float:
        return min(self.max_tau, max(self.min_tau, tau))

    def next_tau(self, tau: float, outcome: RunOutcome, usage: Usage) -> float:
        """The rule: ``tau`` after a run with this outcome and these decode statistics."""
        if outcome is RunOutcome.FAILURE:
            return round(self.clamp(tau + self.failure_step), 6)
        if outcome is RunOutcome.SUCCESS:
            proposed, committed = usage.drafts_proposed, usage.drafts_committed
            if proposed and committed is not None and committed / proposed >= self.saturated_commit_rate:
                return self.clamp(tau)
            return round(self.clamp(tau - self.success_step), 6)
        return self.clamp(tau)

    async def choose(
        self, memory: "MemoryStore | ThreadedMemoryStore | StoreCaller", task_type: str
    ) -> float:
        """The task type's ``tau``, creating its profile at ``initial_tau`` on first use."""
        return self.clamp((await self._profile(_caller(memory), task_type)).tau)

    async def record(
        self,
        memory: "MemoryStore | ThreadedMemoryStore | StoreCaller",
        task_type: str,
        outcome: RunOutcome,
        usage: Usage,
        *,
        adapt: bool = True,
    ) -> "TaskProfile":
        """Count the run in the profile and, with ``adapt``, move its ``tau`` by the rule."""
        db = _caller(memory)
        profile = await self._profile(db, task_type)
        if adapt and (tau := self.next_tau(profile.tau, outcome, usage)) != profile.tau:
            await db(lambda store: store.upsert_task_profile(task_type, tau=tau))
        return await db(
            lambda store: store.add_task_counts(
                task_type,
                drafts_proposed=usage.drafts_proposed or 0,
                drafts_committed=usage.drafts_committed or 0,
                successes=int(outcome is RunOutcome.SUCCESS),
                failures=int(outcome is RunOutcome.FAILURE),
            )
        )

    async def _profile(self, db: StoreCaller, task_type: str) -> "TaskProfile":
        found = await db(lambda store: store.get_task_profile(task_type))
        if found is not None:
            return found
        return await db(lambda store: store.upsert_task_profile(task_type, tau=self.initial_tau))


def _caller(memory: "MemoryStore | ThreadedMemoryStore | StoreCaller") -> StoreCaller:
    return memory if isinstance(memory, StoreCaller) else StoreCaller(memory)


# Keyword rules for the shipped task families; anything else shares the "default" profile.
_KINDS: Final = (
    (
        "strings",
        re.compile(r"\b(sort|reverse|capital letters|uppercase|lowercase|letters?|words?|join)\b", re.I),
    ),
    (
        "conversion",
        re.compile(
            r"\b(cost|costs|price|dollars?|kg|grams?|pounds?|ounces?|(milli|centi|kilo)?met(er|re)s?|miles?"
            r"|inch(es)?|feet|foot|liters?|litres?|hours?|minutes?|seconds?|days?|weeks?)\b",
            re.I,
        ),
    ),
    (
        "arithmetic",
        re.compile(r"\d\s*[-+*/x×]\s*\d|\b(times|plus|minus|divided|product|sum|how many)\b", re.I),
    ),
)


def infer_task_type(task: str) -> str:
    """A task type for a free-form task: the shipped family it resembles, else ``"default"``."""
    return next((name for name, pattern in _KINDS if pattern.search(task)), DEFAULT_TASK_TYPE)
