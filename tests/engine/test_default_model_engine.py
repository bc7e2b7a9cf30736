"""The engine on the shipped default model: the same tokens as the reference decoders for real chat prompts."""

import pytest

from pipo_agent.backends.decode import ARDecoder, PipoReferenceDecoder, SamplingParams
from pipo_agent.backends.engine.decoder import EngineDecoder
from pipo_agent.backends.engine.llm_engine import load_engine
from pipo_agent.tasks import SYSTEM_PROMPT, family_names, generate_tasks, render_chat, solve


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    _, tokenizer = load_engine(kv_cache_bytes=1 << 20, max_model_pairs=64)
    out = []
    for family in family_names():
        task = generate_tasks(family, 1, seed=99)[0]
        tools = [dict(t) for t in solve(task).tools]
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": task.question}]
        text = render_chat(messages, tools, add_generation_prompt=True)
        out.append(list(tokenizer(text, add_special_tokens=False)["input_ids"]))
    return out


def test_pipo_engine_batch_equals_the_reference_decoder(prompts: list[list[int]]) -> None:
    engine, _ = load_engine(block_size=8, chunk_pairs=48, max_num_batched_pairs=96)
    params = [SamplingParams(max_new_tokens=48, tau=tau) for tau in (-1.0, 0.9, 1.0)]
    results = engine.generate(prompts, params)
    reference = PipoReferenceDecoder(engine.model)  # type: ignore[arg-type]
    for prompt, sp, got in zip(prompts, params, results, strict=True):
        want = reference.generate(prompt, sp)
        assert got.slots == want.slots, f"tau={sp.tau}"
    assert results[0].stats.tokens_per_step > 1.5 and results[2].stats.tokens_per_step == 1.0


def test_ar_engine_equals_the_ar_decoder(prompts: list[list[int]]) -> None:
    engine, _ = load_engine(mode="ar", chunk_pairs=64, max_num_batched_pairs=128)
    decoder = ARDecoder(engine.model, engine.eos_token_ids)  # type: ignore[arg-type]
    params = SamplingParams(max_new_tokens=40)
    for prompt, got in zip(prompts, engine.generate(prompts, params), strict=True):
        assert got.token_ids == decoder.generate(prompt, params).token_ids


def test_engine_decoder_streams_steps_like_a_decoder(prompts: list[list[int]]) -> None:
    engine, _ = load_engine()
    decoder = EngineDecoder(engine)
    steps = list(decoder.stream(prompts[0], SamplingParams(max_new_tokens=20, tau=0.9)))
    assert decoder.last_output is not None and decoder.last_output.result is not None
    assert [s.index for s in steps] == list(range(len(steps)))
    assert sum(len([t for t in s.slots if t != engine.pad_token_id]) for s in steps) == len(
        decoder.last_output.result.slots
    ) - decoder.last_output.result.slots.count(engine.pad_token_id)


def test_engine_decoder_names_pad_only_for_pipo() -> None:
    pipo, _ = load_engine(kv_cache_bytes=1 << 20, max_model_pairs=64)
    ar, _ = load_engine(mode="ar", kv_cache_bytes=1 << 20, max_model_pairs=64)
    assert EngineDecoder(pipo).pad_token_id == pipo.pad_token_id
    assert EngineDecoder(ar).pad_token_id is None
