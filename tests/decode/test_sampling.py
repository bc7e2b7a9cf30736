import math

import pytest
import torch

from pipo_agent.backends.decode import Sampler, SamplingParams, SamplingParamsError, new_generator


def draw(params: SamplingParams, logits: torch.Tensor, n: int, seed: int = 0) -> list[int]:
    sampler, generator = Sampler(params), new_generator(seed)
    return [sampler.sample(logits, set(), generator).token_id for _ in range(n)]


def random_logits(seed: int = 0, vocab: int = 50) -> torch.Tensor:
    return torch.randn(vocab, generator=torch.Generator().manual_seed(seed)) * 3


def test_greedy_is_argmax_and_logprob_is_log_softmax() -> None:
    logits = random_logits()
    sampled = Sampler(SamplingParams()).sample(logits, set(), new_generator(0))
    assert sampled.token_id == int(logits.argmax())
    assert sampled.logprob == pytest.approx(float(logits.log_softmax(-1).max()), abs=1e-6)


def test_logprob_is_at_temperature_one_after_penalty() -> None:
    logits = random_logits(1)
    params = SamplingParams(temperature=0.5, presence_penalty=1.5, seed=3)
    seen = {1, 2, 3}
    sampled = Sampler(params).sample(logits, seen, new_generator(3))
    processed = logits.clone()
    processed[[1, 2, 3]] -= 1.5
    assert sampled.logprob == pytest.approx(float(processed.log_softmax(-1)[sampled.token_id]), abs=1e-6)


def test_fixed_seed_is_deterministic_and_seeds_differ() -> None:
    logits = random_logits() / 3
    params = SamplingParams(temperature=1.0)
    first, again, other = (
        draw(params, logits, 40, 7),
        draw(params, logits, 40, 7),
        draw(params, logits, 40, 8),
    )
    assert first == again
    assert first != other
    assert len(set(first)) > 1


def test_top_k_restricts_support() -> None:
    logits = random_logits(2) / 3
    top3 = set(logits.topk(3).indices.tolist())
    samples = draw(SamplingParams(temperature=2.0, top_k=3), logits, 300)
    assert set(samples) == top3


def test_top_p_keeps_the_smallest_nucleus() -> None:
    probs = torch.tensor([0.5, 0.3, 0.1, 0.05, 0.05])
    samples = draw(SamplingParams(temperature=1.0, top_p=0.7), probs.log(), 300)
    assert set(samples) == {0, 1}  # 0.5 < 0.7, 0.5 + 0.3 >= 0.7
    assert set(draw(SamplingParams(temperature=1.0, top_p=0.1), probs.log(), 50)) == {0}


def test_presence_penalty_changes_argmax_only_when_it_should() -> None:
    logits = torch.tensor([2.0, 1.5, 0.0, -1.0])
    generator = new_generator(0)
    assert Sampler(SamplingParams(presence_penalty=1.0)).sample(logits, {0}, generator).token_id == 1
    assert Sampler(SamplingParams(presence_penalty=0.4)).sample(logits, {0}, generator).token_id == 0
    assert Sampler(SamplingParams(presence_penalty=1.0)).sample(logits, {2}, generator).token_id == 0
    assert Sampler(SamplingParams(presence_penalty=-2.0)).sample(logits, {1}, generator).token_id == 1


def test_suppressed_ids_are_never_sampled() -> None:
    logits = torch.tensor([5.0, 1.0, 1.0])
    sampler = Sampler(SamplingParams(temperature=1.0), suppress_ids=(0,))
    generator = new_generator(0)
    assert {sampler.sample(logits, set(), generator).token_id for _ in range(50)} == {1, 2}
    assert Sampler(SamplingParams(), suppress_ids=(0,)).sample(logits, set(), generator).token_id == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -1.0),
        ("temperature", math.inf),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("top_k", -1),
        ("presence_penalty", 2.5),
        ("tau", 2.0),
        ("tau", math.nan),
        ("tau", -1.5),
        ("max_new_tokens", 0),
        ("seed", -1),
        ("stop", ("",)),
    ],
)
def test_invalid_params_name_the_field(field: str, value: object) -> None:
    with pytest.raises(SamplingParamsError, match=field) as info:
        SamplingParams(**{field: value})
    assert isinstance(info.value, ValueError)
    assert "valid:" in str(info.value)


def test_every_construction_path_validates() -> None:
    with pytest.raises(SamplingParamsError, match="tau"):
        SamplingParams().model_copy(update={"tau": 5.0})
    with pytest.raises(SamplingParamsError, match="top_p"):
        SamplingParams.model_validate({"top_p": 0})
    with pytest.raises(SamplingParamsError, match="max_new_tokens"):
        SamplingParams.model_validate_json('{"max_new_tokens": 0}')
    with pytest.raises(SamplingParamsError, match="temprature"):
        SamplingParams(temprature=1.0)


def test_valid_edges_are_accepted() -> None:
    params = SamplingParams(temperature=0.0, top_p=1.0, tau=-1.0, presence_penalty=-2.0, stop=["x", "yz"])
    assert params.stop == ("x", "yz")
    assert SamplingParams(tau=1.0).model_copy(update={"tau": 0.5}).tau == 0.5
