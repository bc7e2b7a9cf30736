"""Pair layout of training sequences (PIPO_SPEC Part B §2.2, §3.2.1, §8.1; Part A §A3): parity, PAD only at
odd indices and never a target, and the re-pairing split `(x_i, PAD) | (x_{i+1}, x_{i+2})`."""

import random

import pytest

from pipo_agent.backends.model.constants import IGNORE_INDEX
from pipo_agent.backends.train.augment import PairedSample, pad_prompt, pair_response, rollout_sample

PAD = 1


def _tokens(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(2, 64) for _ in range(n)]


def _check_invariants(sample: PairedSample, prompt: list[int], response: list[int]) -> None:
    ids, labels, p = sample.input_ids, sample.labels, sample.prompt_len
    assert len(ids) == len(labels)
    assert p % 2 == 0 and len(ids) % 2 == 0
    assert ids[: len(prompt)] == prompt
    assert p == len(prompt) + len(prompt) % 2
    assert labels[:p] == [IGNORE_INDEX] * p
    pads = [i for i, t in enumerate(ids) if t == PAD]
    assert all(i % 2 == 1 for i in pads), pads
    assert all(labels[i] == IGNORE_INDEX for i in pads)
    body, body_labels = ids[p:], labels[p:]
    # Re-pairing loses nothing: the response is the response part without its PADs, in order.
    assert [t for t in body if t != PAD] == response
    assert [t for t in body_labels if t != IGNORE_INDEX] == response
    assert all(lab in (tok, IGNORE_INDEX) for tok, lab in zip(body, body_labels, strict=True))


@pytest.mark.parametrize("seed", range(40))
def test_parity_and_pad_positions_for_random_lengths_and_ratios(seed: int) -> None:
    rng = random.Random(seed)
    prompt = _tokens(rng, rng.randrange(1, 30))
    response = _tokens(rng, rng.randrange(1, 60))
    ratio = rng.choice([0.0, rng.random(), 0.9])
    sample = pair_response(prompt, response, PAD, ratio, random.Random(seed + 1000))
    _check_invariants(sample, prompt, response)


@pytest.mark.parametrize(("prompt_len", "response_len"), [(4, 6), (5, 6), (4, 7), (5, 7), (1, 1), (2, 1)])
def test_ratio_zero_adds_only_parity_pads(prompt_len: int, response_len: int) -> None:
    prompt, response = list(range(10, 10 + prompt_len)), list(range(40, 40 + response_len))
    sample = pair_response(prompt, response, PAD, 0.0)
    _check_invariants(sample, prompt, response)
    body = sample.input_ids[sample.prompt_len :]
    # No forced minimum of one split: ratio 0 means the response is laid out untouched...
    expected = response + [PAD] * (response_len % 2)  # ...apart from one final parity PAD when odd.
    assert body == expected
    assert sample.input_ids[: sample.prompt_len] == prompt + [PAD] * (prompt_len % 2)


def test_ratio_zero_never_splits_over_many_draws() -> None:
    rng = random.Random(0)
    for _ in range(50):
        response = _tokens(rng, 40)
        sample = pair_response([2, 3], response, PAD, 0.0, rng)
        assert sample.input_ids[2:] == response


def test_a_split_repairs_the_rest_of_the_response() -> None:
    response = [10, 11, 12, 13, 14, 15]

    class SplitOnce(random.Random):
        """Splits at the first draw only."""

        def __init__(self) -> None:
            super().__init__(0)
            self.draws = 0

        def random(self) -> float:
            self.draws += 1
            return 0.0 if self.draws == 1 else 1.0

    sample = pair_response([2, 3], response, PAD, 0.5, SplitOnce())
    pairs = [tuple(sample.input_ids[i : i + 2]) for i in range(2, len(sample.input_ids), 2)]
    # (x_0, PAD) | (x_1, x_2) | (x_3, x_4) | (x_5, parity PAD): one PAD per rejection, not the two-PAD split.
    assert pairs == [(10, PAD), (11, 12), (13, 14), (15, PAD)]
    assert sample.labels[2:] == [10, IGNORE_INDEX, 11, 12, 13, 14, 15, IGNORE_INDEX]


@pytest.mark.parametrize("seed", range(20))
def test_every_split_is_followed_by_a_full_pair_of_the_next_tokens(seed: int) -> None:
    rng = random.Random(seed)
    response = _tokens(rng, 50)
    sample = pair_response([2, 3], response, PAD, 0.5, rng)
    pairs = [tuple(sample.input_ids[i : i + 2]) for i in range(2, len(sample.input_ids), 2)]
    cursor = 0  # index into the response of the pair's first token
    splits = 0
    for k, (first, second) in enumerate(pairs):
        assert first == response[cursor]
        if second == PAD:
            splits += 1
            cursor += 1
            if k + 1 < len(pairs):  # the next pair restarts at x_{i+1}: (x_{i+1}, x_{i+2}) or a split again
                assert pairs[k + 1][0] == response[cursor]
        else:
            assert second == response[cursor + 1]
            cursor += 2
    assert cursor == len(response)
    assert splits >= 1  # ratio 0.5 over ~25 pairs


def test_split_rate_follows_the_ratio() -> None:
    rng = random.Random(0)
    response = _tokens(rng, 2001)
    pads = pair_response([2, 3], response, PAD, 0.25, rng).input_ids[2:].count(PAD) - 1  # minus parity PAD
    pairs = (2001 + pads) // 2
    assert 0.2 < pads / pairs < 0.3


def test_positive_ratio_needs_a_generator() -> None:
    with pytest.raises(ValueError, match=r"random\.Random"):
        pair_response([2, 3], [4, 5], PAD, 0.1)


def test_pad_prompt() -> None:
    assert pad_prompt([5, 6, 7], PAD) == [5, 6, 7, PAD]
    assert pad_prompt([5, 6], PAD) == [5, 6]


def test_rollout_sample_keeps_the_decoder_slots_and_masks_pads() -> None:
    prompt = [2, 3, 4]
    slots = [10, 11, 12, PAD, 13]  # a rejected draft, then an odd end (the request finished at token1)
    sample = rollout_sample(prompt, slots, PAD)
    assert sample.prompt_len == 4
    assert sample.input_ids == [2, 3, 4, PAD, 10, 11, 12, PAD, 13, PAD]
    assert sample.labels == [IGNORE_INDEX] * 4 + [10, 11, 12, IGNORE_INDEX, 13, IGNORE_INDEX]
    assert all(i % 2 == 1 for i, t in enumerate(sample.input_ids) if t == PAD)


def test_full_pad_share_lays_out_the_tau_one_pattern() -> None:
    from pipo_agent.backends.train.config import SFTConfig
    from pipo_agent.backends.train.data import TurnSample
    from pipo_agent.backends.train.sft import sft_sample

    pad = 0
    turn = TurnSample(prompt_ids=list(range(10, 17)), response_ids=list(range(30, 51)))
    always = SFTConfig(full_pad_share=1.0)
    sample = sft_sample(turn, pad, always, random.Random(3))
    response = sample.input_ids[sample.prompt_len :]
    # (token, PAD) for every response token, as the decoder emits at tau >= 1
    assert response[0::2] == turn.response_ids and response[1::2] == [pad] * len(turn.response_ids)
    assert sample.labels[sample.prompt_len :][1::2] == [IGNORE_INDEX] * len(turn.response_ids)

    # share 0 draws exactly what the published augmentation drew before the option existed
    plain = SFTConfig()
    rng_a, rng_b = random.Random(11), random.Random(11)
    for _ in range(20):
        expected = pair_response(turn.prompt_ids, turn.response_ids, pad, rng_b.uniform(0, 0.25), rng_b)
        assert sft_sample(turn, pad, plain, rng_a) == expected

    # a share in between splits every pair in about that share of the samples
    half = SFTConfig(full_pad_share=0.5)
    rng = random.Random(5)
    full = 0
    for _ in range(400):
        got = sft_sample(turn, pad, half, rng)
        full += got.input_ids[got.prompt_len :][1::2] == [pad] * len(turn.response_ids)
    assert 160 < full < 240


def test_full_pad_share_is_a_probability() -> None:
    from pydantic import ValidationError

    from pipo_agent.backends.train.config import SFTConfig

    with pytest.raises(ValidationError, match="full_pad_share"):
        SFTConfig(full_pad_share=1.5)
