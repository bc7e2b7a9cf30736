"""Adaptive tau: the rule itself, its persistence in task profiles, and the agent choosing and updating it."""

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pipo_agent.agent import Agent, AgentConfig
from pipo_agent.backend import SamplingSettings
from pipo_agent.messages import FinishReason, Usage
from pipo_agent.run_events import RunResult, StopReason
from pipo_agent.testing import ScriptedBackend, ScriptedTurn
from pipo_agent.thresholds import RunOutcome, ThresholdPolicy, infer_task_type, outcome_of

from .conftest import call, on_store, open_memory, turn

POLICY = ThresholdPolicy(initial_tau=0.9, min_tau=0.5, max_tau=0.99, success_step=0.01, failure_step=0.05)
DRAFTS = Usage(completion_tokens=100, steps=60, drafts_proposed=50, drafts_committed=40)  # 80 % committed


def test_success_lowers_tau_failure_raises_it_more_neutral_keeps_it() -> None:
    assert POLICY.next_tau(0.9, RunOutcome.SUCCESS, DRAFTS) == pytest.approx(0.89)
    assert POLICY.next_tau(0.9, RunOutcome.FAILURE, DRAFTS) == pytest.approx(0.95)
    assert POLICY.next_tau(0.9, RunOutcome.NEUTRAL, DRAFTS) == 0.9


def test_success_with_every_draft_committed_leaves_tau_alone() -> None:
    saturated = DRAFTS.model_copy(update={"drafts_committed": 50})
    assert POLICY.next_tau(0.9, RunOutcome.SUCCESS, saturated) == 0.9
    assert POLICY.next_tau(0.9, RunOutcome.SUCCESS, Usage()) == pytest.approx(0.89)  # no stats: probe anyway


def test_tau_stays_within_its_bounds() -> None:
    assert POLICY.next_tau(0.98, RunOutcome.FAILURE, DRAFTS) == 0.99
    assert POLICY.next_tau(0.505, RunOutcome.SUCCESS, DRAFTS) == 0.5
    tau = 0.9
    for _ in range(100):
        tau = POLICY.next_tau(tau, RunOutcome.SUCCESS, DRAFTS)
    assert tau == 0.5


def test_the_policy_config_is_checked() -> None:
    with pytest.raises(ValidationError, match="min_tau <= initial_tau"):
        ThresholdPolicy(initial_tau=0.4)
    with pytest.raises(ValidationError, match="step"):
        ThresholdPolicy(step=0.1)  # type: ignore[call-arg]


def _result(stop: StopReason, mistakes: int = 0) -> RunResult:
    return RunResult(
        run_id=None,
        thread_id=None,
        stop_reason=stop,
        detail="",
        output="",
        messages=[],
        usage=Usage(),
        steps=1,
        tool_mistakes=mistakes,
        tau=0.9,
        task_type="t",
    )


def test_outcomes_of_runs() -> None:
    assert outcome_of(_result(StopReason.ANSWERED)) is RunOutcome.SUCCESS
    assert outcome_of(_result(StopReason.ANSWERED, mistakes=1)) is RunOutcome.FAILURE  # invalid output
    for stop in (
        StopReason.TRUNCATED,
        StopReason.MAX_STEPS,
        StopReason.TOKEN_BUDGET,
        StopReason.TOOL_RETRIES,
    ):
        assert outcome_of(_result(stop)) is RunOutcome.FAILURE
    for stop in (StopReason.WALL_TIMEOUT, StopReason.IDLE_TIMEOUT, StopReason.CANCELLED):
        assert outcome_of(_result(stop)) is RunOutcome.NEUTRAL


def test_task_types_are_inferred_from_the_shipped_families() -> None:
    assert infer_task_type("What is 12*7? Use the calculator.") == "arithmetic"
    assert infer_task_type("How many hours are in 2 weeks and 62 days?") == "conversion"
    assert infer_task_type("What do 8 kg of grapes cost in total, in dollars?") == "conversion"
    assert infer_task_type("Sort these numbers from smallest to largest: 3, 1") == "strings"
    assert infer_task_type("Tell me a story") == "default"


@pytest.mark.anyio
async def test_profiles_persist_tau_and_counters(db_url: Any) -> None:
    async with open_memory(db_url) as memory:
        assert await POLICY.choose(memory, "math") == 0.9
        after = await POLICY.record(memory, "math", RunOutcome.SUCCESS, DRAFTS)
        assert after.tau == pytest.approx(0.89) and after.successes == 1
        assert (after.drafts_proposed, after.drafts_committed) == (50, 40)
        after = await POLICY.record(memory, "math", RunOutcome.FAILURE, DRAFTS)
        assert after.tau == pytest.approx(0.94) and after.failures == 1 and after.drafts_proposed == 100
        after = await POLICY.record(memory, "math", RunOutcome.FAILURE, DRAFTS, adapt=False)
        assert after.tau == pytest.approx(0.94) and after.failures == 2
        assert await POLICY.choose(memory, "math") == pytest.approx(0.94)
        assert await POLICY.choose(memory, "other") == 0.9


@pytest.mark.anyio
async def test_the_agent_adapts_tau_per_task_type_across_runs(tmp_path: Path) -> None:
    answered = ScriptedTurn(turn("r", "Answer: 1"), usage=DRAFTS)
    truncated = ScriptedTurn(turn("r", "Answer"), finish_reason=FinishReason.LENGTH, usage=DRAFTS)
    script = [answered, answered, truncated, answered, answered]
    backend = ScriptedBackend(script)
    async with open_memory(tmp_path / "m.db") as memory:
        agent = Agent(backend, memory=memory, thresholds=POLICY, config=AgentConfig(task_type="quiz"))
        for _ in range(3):
            await agent.run("q")
        explicit = await agent.run("q", sampling=SamplingSettings(tau=0.6))
        other = await agent.run("q", task_type="other")
        profile = await on_store(memory, lambda s: s.get_task_profile("quiz"))
    taus = [request.sampling.tau for request in backend.requests]
    assert taus == pytest.approx([0.9, 0.89, 0.88, 0.6, 0.9])
    assert explicit.tau == 0.6 and other.tau == 0.9
    assert profile.tau == pytest.approx(0.93)  # 0.88 + 0.05 after the truncated run; the explicit run kept it
    assert (profile.successes, profile.failures) == (3, 1)
    assert backend.requests[0].sampling.task_type == "quiz"


@pytest.mark.anyio
async def test_mistaken_tool_calls_count_as_a_failure(tmp_path: Path) -> None:
    backend = ScriptedBackend([turn("r", "", call("nope")), turn("r", "Answer: 1")])
    async with open_memory(tmp_path / "m.db") as memory:
        result = await Agent(backend, memory=memory, thresholds=POLICY).run("q", task_type="quiz")
        profile = await on_store(memory, lambda s: s.get_task_profile("quiz"))
    assert result.answered and result.tool_mistakes == 1
    assert profile.failures == 1 and profile.tau == pytest.approx(0.95)
