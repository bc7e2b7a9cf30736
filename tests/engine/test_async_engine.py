"""The anyio front end: many coroutines stream at once (asyncio and trio), the event loop never blocks on torch,
errors reach the caller, and leaving a stream early cancels the request and frees its blocks."""

import string

import anyio
import pytest
import torch

from pipo_agent.backends.decode import PipoReferenceDecoder, SamplingParams
from pipo_agent.backends.engine import EngineConfig
from pipo_agent.backends.engine.async_engine import AsyncEngine, EngineClosedError
from pipo_agent.backends.engine.errors import ContextLengthError
from pipo_agent.backends.engine.llm_engine import LLMEngine
from pipo_agent.backends.model import PipoConfig, PipoModel

ALPHABET = string.ascii_letters + string.digits + "+/"
PROMPTS = [list(range(1, 1 + n)) for n in (3, 8, 15, 22, 5, 30)]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def tiny_model() -> PipoModel:
    torch.manual_seed(0)
    backbone = dict(
        model_type="qwen3",
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        tie_word_embeddings=False,
        max_position_embeddings=128,
    )
    return PipoModel(PipoConfig(backbone=backbone, pad_token_id=0, eos_token_ids=())).eval()


def engine(model: PipoModel) -> LLMEngine:
    return LLMEngine(
        model,
        EngineConfig(block_size=4, num_blocks=64, max_num_seqs=4, max_model_pairs=64, chunk_pairs=8),
        eos_token_ids=(),
        pad_token_id=0,
        detokenize=lambda ids: "".join(ALPHABET[i] for i in ids),
    )


@pytest.mark.anyio
async def test_concurrent_streams_each_get_their_own_exact_output() -> None:
    model = tiny_model()
    params = [SamplingParams(max_new_tokens=16, tau=tau) for tau in (-1.0, 0.5, 0.9, 1.0, 0.5, -1.0)]
    texts: dict[int, str] = {}
    results = {}
    ticks = 0

    async def ticker() -> None:  # runs only if the loop is free while torch works in the worker thread
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0)

    async with AsyncEngine(engine(model)) as aengine:

        async def one(i: int) -> None:
            parts = []
            async for out in aengine.stream(PROMPTS[i], params[i]):
                parts.append(out.text_delta)
                results[i] = out.result
            texts[i] = "".join(parts)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            async with anyio.create_task_group() as clients:
                for i in range(len(PROMPTS)):
                    clients.start_soon(one, i)
            tg.cancel_scope.cancel()
    reference = PipoReferenceDecoder(model, lambda ids: "".join(ALPHABET[i] for i in ids))
    for i, prompt in enumerate(PROMPTS):
        want = reference.generate(prompt, params[i])
        assert results[i].slots == want.slots and texts[i] == want.text
    assert ticks > 10


@pytest.mark.anyio
async def test_request_errors_are_raised_to_the_caller() -> None:
    async with AsyncEngine(engine(tiny_model())) as aengine:
        with pytest.raises(ContextLengthError):
            aengine.stream(list(range(1, 63)) * 3, SamplingParams())
        result = await aengine.generate([1, 2, 3], SamplingParams(max_new_tokens=4))
        assert len(result.token_ids) == 4


@pytest.mark.anyio
async def test_leaving_a_stream_early_cancels_the_request_and_frees_its_blocks() -> None:
    eng = engine(tiny_model())
    total = eng.scheduler.block_manager.num_free_blocks
    async with AsyncEngine(eng) as aengine:
        seen = 0
        async for _ in aengine.stream(PROMPTS[5], SamplingParams(max_new_tokens=60, tau=0.5)):
            seen += 1
            if seen == 3:
                break
        with anyio.move_on_after(0.05):  # a cancel scope that fires mid-stream
            async for _ in aengine.stream(PROMPTS[4], SamplingParams(max_new_tokens=60)):
                pass
        # The loop applies the cancellation before its next step; one more request runs after it.
        await aengine.generate([1, 2], SamplingParams(max_new_tokens=2))
        assert not eng.has_unfinished()
        assert eng.scheduler.block_manager.num_free_blocks == total


@pytest.mark.anyio
async def test_outside_its_context_the_engine_says_so() -> None:
    aengine = AsyncEngine(engine(tiny_model()))
    with pytest.raises(EngineClosedError, match="async with"):
        aengine.stream([1, 2], SamplingParams())
