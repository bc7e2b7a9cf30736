from collections.abc import Callable

import pytest
import torch
from transformers import PreTrainedModel

from pipo_agent.backends.decode import (
    ARDecoder,
    ContextLengthError,
    DecodeResult,
    FinishReason,
    PromptError,
    SamplingParams,
)

Factory = Callable[..., PreTrainedModel]
PROMPT = [5, 6, 7, 8, 9]


def run(
    model: PreTrainedModel, prompt: list[int] = PROMPT, eos=(), detokenize=None, **params
) -> DecodeResult:
    params.setdefault("max_new_tokens", 12)
    return ARDecoder(model, eos, detokenize, record_logits=True).generate(prompt, SamplingParams(**params))


def naive_greedy(model: PreTrainedModel, prompt: list[int], n: int, penalty: float = 0.0):
    """Re-runs the full HF forward every step: the definition the cached decoder must match."""
    ids, all_logits = list(prompt), []
    with torch.inference_mode():
        for _ in range(n):
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
            all_logits.append(logits)
            processed = logits.clone()
            seen = sorted(set(ids[len(prompt) :]))
            processed[seen] -= penalty
            ids.append(int(processed.argmax()))
    return ids[len(prompt) :], all_logits


@pytest.mark.parametrize("prompt", [[3], [5, 6, 7, 8, 9], list(range(10, 30))])
def test_greedy_matches_naive_full_forward_loop(ar_factory: Factory, prompt: list[int]) -> None:
    model = ar_factory()
    tokens, logits = naive_greedy(model, prompt, 12)
    result = run(model, prompt)
    assert list(result.token_ids) == tokens
    for step, expected in zip(result.steps, logits, strict=True):
        torch.testing.assert_close(step.logits1, expected, atol=1e-4, rtol=0)
    assert [s.position for s in result.steps] == list(range(len(prompt) - 1, len(prompt) + 11))


def test_presence_penalty_matches_naive_loop(ar_factory: Factory) -> None:
    model = ar_factory()
    tokens, _ = naive_greedy(model, PROMPT, 12, penalty=2.0)
    assert list(run(model, presence_penalty=2.0).token_ids) == tokens
    assert tokens != naive_greedy(model, PROMPT, 12)[0]


def test_max_new_tokens_and_stats(ar_factory: Factory) -> None:
    result = run(ar_factory(), max_new_tokens=7)
    assert len(result.token_ids) == 7 and result.slots == result.token_ids
    assert result.finish_reason == FinishReason.LENGTH
    stats = result.stats
    assert (stats.steps, stats.tokens, stats.drafts_proposed, stats.drafts_committed) == (7, 7, 0, 0)
    assert stats.tokens_per_step == 1.0 and stats.ttft_s > 0 and stats.tpot_s is not None
    assert result.padded_prompt_ids == tuple(PROMPT)


def test_eos_stops_and_is_not_in_token_ids(ar_factory: Factory) -> None:
    model = ar_factory()
    base = list(run(model).token_ids)
    k = next(i for i in range(2, len(base)) if base[i] not in base[:i])
    result = run(model, eos=(base[k], 63))
    assert list(result.token_ids) == base[:k] and list(result.slots) == base[: k + 1]
    assert result.finish_reason == FinishReason.STOP and result.stop_token_id == base[k]
    first = run(model, eos=(base[0],))
    assert first.token_ids == () and first.finish_reason == FinishReason.STOP and first.stats.steps == 1


def test_stop_strings(ar_factory: Factory, toy_detokenize) -> None:
    model = ar_factory()
    base = run(model, detokenize=toy_detokenize)
    stop = base.text[3:5]
    at = base.text.find(stop)
    result = run(model, detokenize=toy_detokenize, stop=(stop,))
    assert result.text == base.text[:at] and result.token_ids == base.token_ids[: at + len(stop)]
    assert result.finish_reason == FinishReason.STOP


def test_sampling_is_seed_deterministic(ar_factory: Factory) -> None:
    model = ar_factory()
    params = dict(temperature=1.0, top_k=30, max_new_tokens=16, seed=5, logprobs=True)
    a, b = run(model, **params), run(model, **params)
    assert a.token_ids == b.token_ids and a.token_logprobs == b.token_logprobs
    assert a.token_ids != run(model, **{**params, "seed": 6}).token_ids


def test_context_limit_and_bad_prompts(ar_factory: Factory) -> None:
    decoder = ARDecoder(ar_factory(max_positions=8))
    with pytest.raises(ContextLengthError, match="8 tokens"):
        decoder.stream([1, 2, 3], SamplingParams(max_new_tokens=6))
    assert len(decoder.generate([1, 2, 3], SamplingParams(max_new_tokens=5)).token_ids) == 5
    with pytest.raises(PromptError, match="empty"):
        decoder.generate([], SamplingParams())
