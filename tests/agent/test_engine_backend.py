"""The embedded-engine backend: settings mapping, and one end-to-end agent run on the real default model.

The end-to-end test checks mechanics (events stream, PIPO statistics reach the usage, the run is stored),
not whether the small model answers correctly.
"""

from pathlib import Path

import anyio
import pytest

from pipo_agent.agent import Agent, AgentConfig
from pipo_agent.backend import ChatRequest, SamplingSettings
from pipo_agent.backends.engine.chat_backend import EngineBackend, sampling_params
from pipo_agent.errors import BackendError
from pipo_agent.memory import MemoryStore, RunStatus
from pipo_agent.messages import UserMessage
from pipo_agent.run_events import RunEvent
from pipo_agent.tasks import SYSTEM_PROMPT
from pipo_agent.tools import calculator_tool, lookup_tool


def test_settings_map_to_engine_parameters() -> None:
    defaults = sampling_params(SamplingSettings(), default_max_tokens=77)
    assert (defaults.tau, defaults.max_new_tokens, defaults.temperature, defaults.top_k) == (0.9, 77, 0.0, 0)
    given = SamplingSettings(
        temperature=0.7, top_p=0.9, top_k=20, max_tokens=12, stop=["\n\n"], seed=3, tau=0.5
    )
    params = sampling_params(given)
    assert (params.temperature, params.top_p, params.top_k, params.seed) == (0.7, 0.9, 20, 3)
    assert (params.max_new_tokens, params.stop, params.tau) == (12, ("\n\n",), 0.5)
    with pytest.raises(BackendError, match="tau"):
        sampling_params(SamplingSettings(tau=1.5))


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_an_agent_run_on_the_default_model(tmp_path: Path) -> None:
    def load() -> EngineBackend:
        return EngineBackend.from_default(kv_cache_bytes=16 << 20, max_model_pairs=1024)

    backend = await anyio.to_thread.run_sync(load)
    with pytest.raises(BackendError, match="not running"):
        await anext(aiter(backend.stream(ChatRequest(messages=[UserMessage(content="hi")]))))
    events: list[RunEvent] = []
    config = AgentConfig(max_steps=2, task_type="arithmetic", sampling=SamplingSettings(max_tokens=48))
    async with backend, MemoryStore.open(tmp_path / "agent.db") as store:
        agent = Agent(
            backend,
            tools=[calculator_tool(), lookup_tool()],
            system_prompt=SYSTEM_PROMPT,
            config=config,
            memory=store,
        )
        result = await agent.run("What is 12*7? Use the calculator.", hooks=[events.append])
        run = await store.get_run(result.run_id or "")
        steps = await store.list_steps(run.id)
        assert backend.engine.engine.num_unfinished == 0
        async with Agent(backend, config=config).stream("Count to 100.") as cut:
            async for event in cut:
                if event.kind == "reasoning_delta":
                    break  # leaving the stream aborts the engine's request
        with anyio.fail_after(5):
            while backend.engine.engine.num_unfinished:
                await anyio.sleep(0.01)
    kinds = [event.kind for event in events]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end" and "reasoning_delta" in kinds
    usages = [event.usage for event in events if event.kind == "usage"]
    assert usages and all(u.steps and u.tokens_per_step and u.tokens_per_step >= 1 for u in usages)
    first = usages[0]
    assert first.prompt_tokens > 50 and 0 < first.completion_tokens <= 49 and first.tau == 0.9
    assert first.drafts_proposed is not None and first.drafts_committed is not None
    assert 0 < first.reasoning_tokens <= first.completion_tokens
    assert result.usage.steps == sum(u.steps or 0 for u in usages)
    assert run.status in (RunStatus.COMPLETED, RunStatus.FAILED) and len(steps) == result.steps
    assert steps[0].usage["tokens_per_step"] == first.tokens_per_step
    assert cut.result.stop_reason == "cancelled"
