from collections.abc import Callable

import pytest
import torch

from pipo_agent.backends.decode import (
    ContextLengthError,
    DecodeResult,
    FinishReason,
    PipoReferenceDecoder,
    PromptError,
    SamplingParams,
    SamplingParamsError,
)
from pipo_agent.backends.model import PipoModel

Factory = Callable[..., PipoModel]
PROMPT = [5, 6, 7, 8, 9]


def run(model: PipoModel, prompt: list[int] = PROMPT, detokenize=None, **params) -> DecodeResult:
    params.setdefault("max_new_tokens", 16)
    decoder = PipoReferenceDecoder(model, detokenize, record_logits=True)
    return decoder.generate(prompt, SamplingParams(**params))


def count_mtp_calls(model: PipoModel) -> list[int]:
    calls = [0]

    def hook(*_: object) -> None:
        calls[0] += 1

    model.mtp.register_forward_hook(hook)
    return calls


@pytest.mark.parametrize(
    ("prompt", "padded"), [([5, 6, 7], [5, 6, 7, 0]), ([5, 6, 7, 8], [5, 6, 7, 8]), ([9], [9, 0])]
)
def test_odd_prompts_get_exactly_one_pad(pipo_factory: Factory, prompt: list[int], padded: list[int]) -> None:
    assert list(run(pipo_factory(), prompt, max_new_tokens=2).padded_prompt_ids) == padded


@pytest.mark.parametrize("params", [dict(tau=0.5), dict(tau=1.0), dict(tau=0.5, temperature=1.5, seed=1)])
def test_pad_only_in_slots_at_odd_indices(pipo_factory: Factory, params: dict) -> None:
    model = pipo_factory()
    pad = model.config.pad_token_id
    result = run(model, **params)
    assert pad not in result.token_ids
    assert pad in result.slots  # rejections happened, so the check is not vacuous
    assert [t for t in result.slots if t != pad] == list(result.token_ids)
    assert len(result.padded_prompt_ids) % 2 == 0
    assert all(i % 2 == 1 for i, t in enumerate(result.slots) if t == pad)  # PAD only as a pair's second slot


def test_negative_tau_commits_every_draft(pipo_factory: Factory) -> None:
    model = pipo_factory()
    result = run(model, tau=-1.0)
    assert model.config.pad_token_id not in result.slots
    assert all(step.committed and step.token2 == step.draft is not None for step in result.steps)
    assert result.stats.drafts_proposed == result.stats.drafts_committed == result.stats.steps
    assert result.stats.tokens_per_step == 2.0
    assert result.steps[0].token2 is not None  # the prefill emits a real draft


def test_tau_one_skips_phase_two_entirely(pipo_factory: Factory) -> None:
    model = pipo_factory()
    calls = count_mtp_calls(model)
    result = run(model, tau=1.0, max_new_tokens=9)
    assert calls[0] == 0
    pad = model.config.pad_token_id
    assert list(result.slots[1::2]) == [pad] * 8 and pad not in result.slots[0::2]
    assert len(result.slots) == 17 and result.finish_reason == FinishReason.LENGTH
    assert all(step.conf is None and step.draft is None for step in result.steps)
    assert result.stats.drafts_proposed == 0


def test_mtp_runs_once_per_step_that_drafts(pipo_factory: Factory) -> None:
    model = pipo_factory()
    calls = count_mtp_calls(model)
    result = run(model, tau=0.5, max_new_tokens=11)
    assert calls[0] == result.stats.drafts_proposed == sum(s.draft is not None for s in result.steps)
    assert 0 < result.stats.drafts_committed < result.stats.drafts_proposed


@pytest.mark.parametrize(("tau", "budget"), [(-1.0, 7), (-1.0, 1), (0.5, 9), (1.0, 4)])
def test_max_new_tokens_counts_real_tokens(pipo_factory: Factory, tau: float, budget: int) -> None:
    result = run(pipo_factory(), tau=tau, max_new_tokens=budget)
    assert len(result.token_ids) == budget == result.stats.tokens
    assert result.finish_reason == FinishReason.LENGTH
    if tau < 0:
        assert len(result.slots) == budget  # the last step's token2 was dropped when the budget is odd
        assert result.stats.steps == (budget + 1) // 2


def first_new(tokens: list[int], start: int) -> int:
    """Index of the first token at or after `start` that does not occur before it."""
    return next(i for i in range(start, len(tokens)) if tokens[i] not in tokens[:i])


def test_eos_as_token1_drops_token2(pipo_factory: Factory) -> None:
    base = run(pipo_factory(), tau=-1.0)
    tokens = list(base.token_ids)
    k = first_new(tokens[::2], 1) * 2  # token1 of a decode step, absent from the output before it
    eos = tokens[k]
    model = pipo_factory(eos=(eos,))
    calls = count_mtp_calls(model)
    result = run(model, tau=-1.0)
    assert list(result.token_ids) == tokens[:k]
    assert result.finish_reason == FinishReason.STOP and result.stop_token_id == eos
    assert list(result.slots) == tokens[: k + 1]  # ends with the EOS as token1, no token2
    last = result.steps[-1]
    assert last.token1 == eos and last.token2 is None and last.draft is None and last.slots == (eos,)
    assert calls[0] == len(result.steps) - 1
    assert result.stats.tokens == k + 1


def test_eos_as_token2_finishes_there(pipo_factory: Factory) -> None:
    base = run(pipo_factory(), tau=-1.0)
    tokens = list(base.token_ids)
    k = next(i for i in range(1, len(tokens), 2) if tokens[i] not in tokens[:i])
    eos = tokens[k]
    result = run(pipo_factory(eos=(eos,)), tau=-1.0)
    assert list(result.token_ids) == tokens[:k]
    assert list(result.slots) == tokens[: k + 1] and result.steps[-1].token2 == eos
    assert result.finish_reason == FinishReason.STOP and result.stop_token_id == eos


def test_eos_as_the_very_first_token_is_detected(pipo_factory: Factory, toy_detokenize) -> None:
    first = run(pipo_factory(), tau=-1.0).token_ids[0]
    result = run(pipo_factory(eos=(first,)), detokenize=toy_detokenize, tau=-1.0)
    assert result.token_ids == () and result.text == ""
    assert result.finish_reason == FinishReason.STOP and result.stop_token_id == first
    assert result.slots == (first,) and result.stats.steps == 1 and result.stats.drafts_proposed == 0
    assert result.stats.tpot_s is None


def test_stop_strings_cut_text_and_tokens(pipo_factory: Factory, toy_detokenize) -> None:
    base = run(pipo_factory(), detokenize=toy_detokenize, tau=0.5)
    assert base.text == toy_detokenize(list(base.token_ids))
    stop = base.text[4:6]
    at = base.text.find(stop)
    result = run(pipo_factory(), detokenize=toy_detokenize, tau=0.5, stop=("not-there", stop))
    assert result.finish_reason == FinishReason.STOP and result.stop_token_id is None
    assert result.text == base.text[:at]
    assert result.token_ids == base.token_ids[: at + len(stop)]  # the token completing the stop string kept
    assert [t for t in result.slots if t != 0] == list(result.token_ids)
    assert result.slots == base.slots[: len(result.slots)]


def test_stop_strings_need_a_detokenizer(pipo_factory: Factory) -> None:
    with pytest.raises(SamplingParamsError, match="detokenize"):
        run(pipo_factory(), stop=("x",))


def assert_teacher_forced_match(model: PipoModel, result: DecodeResult) -> None:
    pad = model.config.pad_token_id
    ids = list(result.padded_prompt_ids) + list(result.slots)
    ids += [pad] * (len(ids) % 2)
    with torch.inference_mode():
        out = model(torch.tensor([ids]))
    for step in result.steps:
        assert step.position == len(result.padded_prompt_ids) // 2 - 1 + step.index
        torch.testing.assert_close(out.logits1[0, step.position], step.logits1, atol=1e-4, rtol=0)
        if step.logits2 is not None:
            torch.testing.assert_close(out.logits2[0, step.position], step.logits2, atol=1e-4, rtol=0)


@pytest.mark.parametrize("head", ["hm", "token"])
@pytest.mark.parametrize("tau", [-1.0, 0.5, 1.0])
def test_teacher_forced_forward_reproduces_decoder_logits(
    pipo_factory: Factory, head: str, tau: float
) -> None:
    model = pipo_factory(head=head)
    prompts = [[3], [5, 6, 7, 8], [11, 12, 13, 14, 15, 16, 17]]
    sampled = dict(temperature=1.0, top_k=20, presence_penalty=0.5, seed=4)
    runs = [run(model, p, tau=tau, max_new_tokens=13) for p in prompts]
    runs.append(run(model, prompts[2], tau=tau, max_new_tokens=13, **sampled))
    for result in runs:
        assert_teacher_forced_match(model, result)
    assert sum(s.logits2 is not None for r in runs for s in r.steps) == (
        0 if tau >= 1 else sum(r.stats.drafts_proposed for r in runs)
    )


def test_sampled_generation_is_seed_deterministic(pipo_factory: Factory) -> None:
    model = pipo_factory()
    params = dict(temperature=1.0, top_p=0.9, tau=0.5, max_new_tokens=20, logprobs=True)
    a, b, c = run(model, seed=11, **params), run(model, seed=11, **params), run(model, seed=12, **params)
    assert a.slots == b.slots and [s.conf for s in a.steps] == [s.conf for s in b.steps]
    assert a.token_logprobs == b.token_logprobs and len(a.token_logprobs) == len(a.token_ids)
    assert a.slots != c.slots


def test_logprobs_refer_to_the_pad_suppressed_distribution(pipo_factory: Factory) -> None:
    model = pipo_factory()
    result = run(model, tau=-1.0, max_new_tokens=6, logprobs=True)
    pad = model.config.pad_token_id
    for step in result.steps:
        for logits, token, logprob in (
            (step.logits1, step.token1, step.logprob1),
            (step.logits2, step.draft, step.logprob2),
        ):
            masked = logits.clone()
            masked[pad] = float("-inf")
            assert logprob == pytest.approx(float(masked.log_softmax(-1)[token]), abs=1e-5)
    assert result.token_logprobs == tuple(lp for s in result.steps for lp in (s.logprob1, s.logprob2))


def test_presence_penalty_counts_real_tokens_including_this_steps_token1(pipo_factory: Factory) -> None:
    model = pipo_factory()
    pad = model.config.pad_token_id
    result = run(model, tau=0.5, presence_penalty=2.0, max_new_tokens=20)
    seen: set[int] = set()

    def replay(logits: torch.Tensor) -> int:
        processed = logits.clone()
        processed[pad] = float("-inf")
        processed[sorted(seen)] -= 2.0
        return int(processed.argmax())

    for step in result.steps:
        assert step.token1 == replay(step.logits1)
        seen.add(step.token1)
        if step.logits2 is not None:
            assert step.draft == replay(step.logits2)
        if step.committed:
            seen.add(step.token2)
    assert seen == set(result.token_ids) and pad in result.slots


def test_stream_yields_the_steps_of_generate(pipo_factory: Factory) -> None:
    model = pipo_factory()
    params = SamplingParams(tau=0.5, max_new_tokens=10)
    decoder = PipoReferenceDecoder(model)
    steps = list(decoder.stream(PROMPT, params))
    result = decoder.generate(PROMPT, params)
    assert [s.slots for s in steps] == [s.slots for s in result.steps]
    assert [s.finish_reason for s in steps] == [None] * (len(steps) - 1) + [FinishReason.LENGTH]


def test_context_limit(pipo_factory: Factory) -> None:
    model = pipo_factory(max_positions=8)
    decoder = PipoReferenceDecoder(model)
    with pytest.raises(ContextLengthError, match="max_position_embeddings"):
        decoder.stream([1, 2, 3, 4, 5], SamplingParams(max_new_tokens=6))  # 3 pairs + 6 > 8, raised eagerly
    result = decoder.generate([1, 2, 3, 4, 5], SamplingParams(max_new_tokens=5, tau=1.0))
    assert len(result.token_ids) == 5
    assert_teacher_forced_match(
        model,
        PipoReferenceDecoder(model, record_logits=True).generate(
            [1, 2, 3, 4, 5], SamplingParams(max_new_tokens=5, tau=1.0)
        ),
    )


@pytest.mark.parametrize("prompt", [[], [64], [-1]])
def test_bad_prompts(pipo_factory: Factory, prompt: list[int]) -> None:
    with pytest.raises(PromptError):
        PipoReferenceDecoder(pipo_factory()).stream(prompt, SamplingParams())
