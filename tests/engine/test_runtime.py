"""The engine's data plane against the reference decoders: token-for-token equality for mixed batches (prompt
lengths, tau values, chunked prefill), sampled runs, prefix-cache hits, preemption and the AR baseline; logits
against a teacher-forced forward; streaming text; bad requests; cancellation."""

import string
from collections.abc import Sequence

import pytest
import torch
from transformers import PreTrainedModel

from pipo_agent.backends.decode import ARDecoder, PipoReferenceDecoder, SamplingParams
from pipo_agent.backends.decode.errors import PromptError, SamplingParamsError
from pipo_agent.backends.decode.types import DecodeResult
from pipo_agent.backends.engine import EngineConfig
from pipo_agent.backends.engine.errors import ContextLengthError, EngineConfigError, RequestError
from pipo_agent.backends.engine.llm_engine import LLMEngine, RequestOutput
from pipo_agent.backends.model import PipoConfig, PipoModel
from pipo_agent.backends.model.backbone import build_backbone

VOCAB = 64
PAD = 0
ALPHABET = string.ascii_letters + string.digits + "+/"  # one character per token id


def tiny_backbone(model_type: str = "qwen3", kv_heads: int = 2) -> dict[str, object]:
    return dict(
        model_type=model_type,
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        head_dim=8,
        tie_word_embeddings=False,
        max_position_embeddings=256,
    )


def make_pipo(
    model_type: str = "qwen3",
    *,
    head: str = "hm",
    kv_heads: int = 2,
    eos: tuple[int, ...] = (),
    seed: int = 0,
) -> PipoModel:
    torch.manual_seed(seed)
    config = PipoConfig(
        backbone=tiny_backbone(model_type, kv_heads),
        pad_token_id=PAD,
        eos_token_ids=eos,
        confidence_head=head,
    )
    return PipoModel(config).eval()


def make_ar(model_type: str = "qwen3", *, seed: int = 0) -> PreTrainedModel:
    torch.manual_seed(seed)
    return build_backbone(tiny_backbone(model_type)).eval()


def detokenize(ids: list[int]) -> str:
    return "".join(ALPHABET[i] for i in ids)


PROMPTS = [[7], [5, 6, 7, 8], [11, 12, 13, 14, 15, 16, 17], list(range(1, 21)), list(range(30, 63))]
TAUS = [-1.0, 0.5, 0.9, 1.0, 0.5]


def make_engine(model: torch.nn.Module, **overrides: object) -> LLMEngine:
    sizes: dict[str, object] = dict(
        block_size=4,
        num_blocks=64,
        max_num_seqs=8,
        max_num_batched_pairs=12,
        chunk_pairs=5,
        max_model_pairs=128,
    )
    sizes.update(overrides)
    eos = model.config.eos_token_ids if isinstance(model, PipoModel) else ()
    return LLMEngine(
        model,
        EngineConfig(**sizes),
        eos_token_ids=eos,
        pad_token_id=PAD,
        detokenize=detokenize,
        record_logits=True,
    )


def run_all(
    engine: LLMEngine, prompts: Sequence[list[int]], params: Sequence[SamplingParams]
) -> list[RequestOutput]:
    ids = [engine.add_request(p, sp) for p, sp in zip(prompts, params, strict=True)]
    final: dict[int, RequestOutput] = {}
    while engine.has_unfinished():
        for out in engine.step():
            if out.finished:
                final[out.request_id] = out
    return [final[i] for i in ids]


def reference(
    model: PipoModel, prompts: Sequence[list[int]], params: Sequence[SamplingParams]
) -> list[DecodeResult]:
    decoder = PipoReferenceDecoder(model, detokenize)
    return [decoder.generate(p, sp) for p, sp in zip(prompts, params, strict=True)]


def assert_same(engine_results: Sequence[DecodeResult], ref_results: Sequence[DecodeResult]) -> None:
    for got, want in zip(engine_results, ref_results, strict=True):
        assert got.slots == want.slots
        assert got.token_ids == want.token_ids and got.finish_reason == want.finish_reason
        assert [(s.draft, s.committed) for s in got.steps] == [(s.draft, s.committed) for s in want.steps]


@pytest.mark.parametrize(
    ("model_type", "head"), [("qwen3", "hm"), ("qwen3", "token"), ("llama", "hm"), ("qwen2", "hm")]
)
def test_greedy_batch_matches_reference_token_for_token(model_type: str, head: str) -> None:
    model = make_pipo(model_type, head=head)
    params = [SamplingParams(max_new_tokens=24, tau=tau) for tau in TAUS]
    outs = run_all(make_engine(model), PROMPTS, params)
    results = [o.result for o in outs]
    assert all(r is not None for r in results)
    assert_same(results, reference(model, PROMPTS, params))  # type: ignore[arg-type]
    committed = {tau: sum(s.committed for s in r.steps) for tau, r in zip(TAUS, results, strict=True) if r}
    assert committed[-1.0] > 0 and committed[1.0] == 0


def test_sampled_batch_matches_reference_with_the_same_seeds() -> None:
    model = make_pipo(kv_heads=4)
    params = [
        SamplingParams(
            max_new_tokens=20, tau=tau, temperature=1.0, top_k=20, presence_penalty=0.5, seed=10 + i
        )
        for i, tau in enumerate(TAUS)
    ]
    outs = run_all(make_engine(model), PROMPTS, params)
    assert_same([o.result for o in outs], reference(model, PROMPTS, params))  # type: ignore[misc]


@pytest.mark.parametrize("head", ["hm", "token"])
def test_engine_logits_match_a_teacher_forced_forward(head: str) -> None:
    model = make_pipo(head=head)
    params = [SamplingParams(max_new_tokens=16, tau=tau) for tau in TAUS]
    for out in run_all(make_engine(model), PROMPTS, params):
        result = out.result
        assert result is not None
        ids = list(result.padded_prompt_ids) + list(result.slots)
        ids += [PAD] * (len(ids) % 2)
        with torch.inference_mode():
            forward = model(torch.tensor([ids]))
        for step in result.steps:
            assert step.logits1 is not None
            torch.testing.assert_close(forward.logits1[0, step.position], step.logits1, atol=1e-4, rtol=0)
            if step.logits2 is not None:
                torch.testing.assert_close(forward.logits2[0, step.position], step.logits2, atol=1e-4, rtol=0)
        assert sum(s.logits2 is not None for s in result.steps) == result.stats.drafts_proposed


def test_a_follow_up_turn_reuses_the_history_from_the_prefix_cache() -> None:
    model = make_pipo()
    engine = make_engine(model)
    first = run_all(engine, [PROMPTS[4]], [SamplingParams(max_new_tokens=12, tau=0.5)])[0]
    assert first.result is not None and first.stats is not None
    assert first.stats.prefix_cached_tokens == 0
    # The next turn replays the conversation so far (the exact slots) and adds the user's reply.
    history = list(first.result.padded_prompt_ids) + list(first.result.slots)
    follow_up = history + [PAD] * (len(history) % 2) + [40, 41, 42]
    params = SamplingParams(max_new_tokens=12, tau=0.5)
    second = run_all(engine, [follow_up], [params])[0]
    assert second.stats is not None and second.stats.prefix_cached_tokens >= 16
    assert_same([second.result], reference(model, [follow_up], [params]))  # type: ignore[list-item]


def test_preemption_recomputes_and_changes_no_output() -> None:
    model = make_pipo()
    # 10 blocks of 4 pairs: four requests of ~10 prompt pairs growing by up to 30 pairs cannot all fit.
    engine = make_engine(model, num_blocks=10, max_model_pairs=40, max_num_batched_pairs=16, chunk_pairs=8)
    prompts = [list(range(1 + i, 19 + i)) for i in range(4)]
    params = [SamplingParams(max_new_tokens=30, tau=tau) for tau in (-1.0, 0.5, 1.0, 0.9)]
    outs = run_all(engine, prompts, params)
    assert sum(o.stats.num_preemptions for o in outs if o.stats) > 0
    assert engine.scheduler.block_manager.num_free_blocks == 10
    assert_same([o.result for o in outs], reference(model, prompts, params))  # type: ignore[misc]


@pytest.mark.parametrize("sampled", [False, True])
def test_ar_baseline_on_the_same_engine_matches_the_ar_decoder(sampled: bool) -> None:
    model = make_ar()
    extra = dict(temperature=1.0, top_p=0.9, seed=3) if sampled else {}
    params = [SamplingParams(max_new_tokens=20, **extra) for _ in PROMPTS]  # type: ignore[arg-type]
    outs = run_all(make_engine(model), PROMPTS, params)
    decoder = ARDecoder(model, (), detokenize)
    for out, prompt, sp in zip(outs, PROMPTS, params, strict=True):
        want = decoder.generate(prompt, sp)
        assert out.result is not None and out.result.token_ids == want.token_ids
        assert out.result.stats.tokens_per_step == 1.0


def test_streamed_text_is_the_result_text_and_stops_are_cut() -> None:
    model = make_pipo()
    probe = run_all(make_engine(model), [PROMPTS[3]], [SamplingParams(max_new_tokens=30, tau=0.5)])[0].result
    assert probe is not None and probe.text
    stop = probe.text[10:12]
    params = SamplingParams(max_new_tokens=30, tau=0.5, stop=(stop,))
    engine = make_engine(model)
    request_id = engine.add_request(PROMPTS[3], params)
    deltas: list[str] = []
    final = None
    while engine.has_unfinished():
        for out in engine.step():
            assert out.request_id == request_id
            deltas.append(out.text_delta)
            final = out
    assert final is not None and final.result is not None
    assert "".join(deltas) == final.result.text
    assert stop not in final.result.text and final.finish_reason == "stop"
    want = PipoReferenceDecoder(model, detokenize).generate(PROMPTS[3], params)
    assert final.result.text == want.text and final.result.slots == want.slots


def test_bad_requests_get_clear_errors_and_change_nothing() -> None:
    engine = make_engine(make_pipo(), max_model_pairs=16)
    with pytest.raises(ContextLengthError, match="40 tokens needs 20 pairs, over the context of 16 pairs"):
        engine.add_request(list(range(1, 41)), SamplingParams())
    with pytest.raises(PromptError, match="outside the vocabulary"):
        engine.add_request([1, 2, 999], SamplingParams())
    with pytest.raises(RequestError, match="must be SamplingParams"):
        engine.add_request([1, 2], {"tau": 0.5})  # type: ignore[arg-type]
    with pytest.raises(SamplingParamsError, match="tau"):
        SamplingParams(tau=1.5)
    assert not engine.has_unfinished() and engine.scheduler.num_unfinished == 0


def test_cancelling_frees_blocks_at_once_and_others_finish_unchanged() -> None:
    model = make_pipo()
    engine = make_engine(model)
    params = SamplingParams(max_new_tokens=24, tau=0.5)
    keep = engine.add_request(PROMPTS[3], params)
    drop = engine.add_request(PROMPTS[4], params)
    for _ in range(4):
        engine.step()
    free_before = engine.scheduler.block_manager.num_free_blocks
    assert engine.abort(drop) and not engine.abort(drop)
    assert engine.scheduler.block_manager.num_free_blocks > free_before
    final = None
    while engine.has_unfinished():
        for out in engine.step():
            assert out.request_id == keep
            final = out
    assert final is not None and final.result is not None
    assert final.result.slots == PipoReferenceDecoder(model).generate(PROMPTS[3], params).slots


def test_unsupported_backbones_and_backends_fail_early_with_the_choices() -> None:
    model = make_pipo()
    with pytest.raises(EngineConfigError, match="valid: torch, triton"):
        LLMEngine(
            model,
            EngineConfig(num_blocks=8, max_model_pairs=32),
            eos_token_ids=(),
            pad_token_id=PAD,
            attention="flash",
        )
    with pytest.raises(EngineConfigError, match="runs on CUDA"):
        LLMEngine(
            model,
            EngineConfig(num_blocks=8, max_model_pairs=32),
            eos_token_ids=(),
            pad_token_id=PAD,
            attention="triton",
        )


def test_logprobs_of_token1_and_token2_match_the_reference() -> None:
    model = make_pipo()
    params = [SamplingParams(max_new_tokens=16, tau=tau, logprobs=True) for tau in (-1.0, 0.5)]
    prompts = PROMPTS[2:4]
    outs = run_all(make_engine(model), prompts, params)
    for out, want in zip(outs, reference(model, prompts, params), strict=True):
        got = out.result
        assert got is not None and got.token_logprobs is not None and want.token_logprobs is not None
        assert got.token_logprobs == pytest.approx(want.token_logprobs, abs=1e-5)
        for step, ref_step in zip(got.steps, want.steps, strict=True):
            assert step.logprob1 == pytest.approx(ref_step.logprob1, abs=1e-5)
            assert (step.logprob2 is None) == (ref_step.logprob2 is None)
            if step.logprob2 is not None:
                assert step.logprob2 == pytest.approx(ref_step.logprob2, abs=1e-5)
