"""ChatPIPO and AgentRunnable on the real embedded default model: per-call PIPO settings reach the engine,
its decode statistics come back, and the agent runs on the private loop. Mechanics, not answer quality."""

from collections.abc import Iterator

import pytest

from pipo_agent.agent import Agent, AgentConfig
from pipo_agent.backend import SamplingSettings
from pipo_agent.backends.engine.chat_backend import EngineBackend
from pipo_agent.langchain import AgentRunnable, ChatPIPO
from pipo_agent.tasks import SYSTEM_PROMPT
from pipo_agent.tools import calculator_tool


@pytest.fixture(scope="module", autouse=True)
def stop_the_default_engines() -> Iterator[None]:
    yield
    ChatPIPO().close()
    ChatPIPO(model="pipo-default-ar").close()


def test_per_call_tau_and_task_type_reach_the_engine() -> None:
    model = ChatPIPO(max_tokens=24, task_type="arithmetic")
    message = model.invoke("What is 3+4?", tau=0.5)
    meta = message.response_metadata
    assert (meta["model_name"], meta["tau"], meta["task_type"]) == ("pipo-default", 0.5, "arithmetic")
    assert meta["steps"] >= 1 and meta["tokens_per_step"] >= 1.0
    assert 0 <= meta["drafts_committed"] <= meta["drafts_proposed"]
    usage = message.usage_metadata
    assert usage is not None and 0 < usage["output_tokens"] <= 25  # the stopping EOS may be counted
    assert 0 <= usage["output_token_details"]["reasoning"] <= usage["output_tokens"]
    streamed = None
    for chunk in model.bind(tau=0.7).stream("What is 3+4?"):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed is not None and streamed.response_metadata["tau"] == 0.7


def test_the_autoregressive_teacher_drafts_nothing() -> None:
    meta = ChatPIPO(model="pipo-default-ar", max_tokens=16).invoke("What is 3+4?").response_metadata
    assert meta["model_name"] == "pipo-default-ar" and "tau" not in meta


def test_the_agent_runnable_runs_the_engine_on_its_private_loop() -> None:
    backend = EngineBackend.from_default(kv_cache_bytes=16 << 20, max_model_pairs=1024)
    config = AgentConfig(max_steps=2, sampling=SamplingSettings(max_tokens=48))
    agent = Agent(backend, tools=[calculator_tool()], system_prompt=SYSTEM_PROMPT, config=config)
    runnable = AgentRunnable(agent)
    try:
        out = runnable.invoke({"task": "What is 12*7? Use the calculator.", "task_type": "arithmetic"})
        assert 1 <= out["steps"] <= 2 and out["usage_metadata"]["output_tokens"] > 0
        assert out["decode_stats"]["steps"] >= 1 and out["tau"] is not None
        kinds = [event.kind for event in runnable.stream("What is 2+2?")]
        assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    finally:
        runnable.close()
    assert backend.engine.engine.num_unfinished == 0
