import math

import pytest

from pipo_agent.backends.engine import OutputSlotsError, RequestError, Sequence, SequenceStatus

PAD = 0


def make(prompt: list[int], *, max_new_tokens: int = 100, tau: float = 0.9) -> Sequence:
    return Sequence(7, prompt, pad_token_id=PAD, max_new_tokens=max_new_tokens, tau=tau)


def test_odd_prompt_gets_one_pad_and_even_prompt_none() -> None:
    odd = make([5, 6, 7])
    assert odd.token_ids == [5, 6, 7, PAD]
    assert (odd.num_prompt_tokens, odd.num_prompt_slots, odd.num_prompt_pairs) == (3, 4, 2)
    assert odd.pair_ids(0) == (5, 6)
    assert odd.last_pair() == (7, PAD)
    even = make([5, 6, 7, 8])
    assert even.token_ids == [5, 6, 7, 8]
    assert even.num_pairs == even.num_prompt_pairs == 2
    assert even.status is SequenceStatus.WAITING
    assert even.output_slots == [] and even.num_output_tokens == 0


def test_each_step_adds_one_pair_and_pad_is_not_a_token() -> None:
    seq = make([5, 6, 7])
    seq.append_slots([11, 12], final=False)  # committed draft
    assert seq.num_pairs == 3 and seq.num_output_tokens == 2
    seq.append_slots([13, PAD], final=False)  # rejected draft
    assert seq.num_pairs == 4 and seq.num_output_tokens == 3
    assert seq.last_pair() == (13, PAD)
    assert seq.output_slots == [11, 12, 13, PAD]
    assert seq.prompt_token_ids == [5, 6, 7, PAD]
    assert seq.slot_ids(1, 3) == [7, PAD, 11, 12]


def test_finishing_on_token1_appends_a_lone_slot() -> None:
    seq = make([5, 6])
    seq.append_slots([11, 12], final=False)
    seq.append_slots([13], final=True)
    assert seq.token_ids == [5, 6, 11, 12, 13]
    assert seq.num_slots == 5 and seq.num_pairs == math.ceil(5 / 2) == 3
    assert seq.num_output_tokens == 3
    assert seq.last_pair() == (13, PAD)  # read as padded (Part B §2.2 rule 3)
    assert seq.slot_ids(2, 3) == [13, PAD]
    with pytest.raises(OutputSlotsError):
        seq.append_slots([14, 15], final=False)  # the stream is closed


@pytest.mark.parametrize(
    ("slots", "final"),
    [([11], False), ([11, 12, 13], False), ([], True), ([PAD, 12], False), ([11, -1], False)],
)
def test_malformed_steps_are_rejected_without_change(slots: list[int], final: bool) -> None:
    seq = make([5, 6])
    with pytest.raises(OutputSlotsError):
        seq.append_slots(slots, final=final)
    assert seq.token_ids == [5, 6] and seq.num_output_tokens == 0


def test_real_tokens_never_exceed_max_new_tokens() -> None:
    seq = make([5, 6], max_new_tokens=3)
    seq.append_slots([11, PAD], final=False)
    seq.append_slots([12, 13], final=False)
    assert seq.num_output_tokens == 3
    seq2 = make([5, 6], max_new_tokens=2)
    seq2.append_slots([11, PAD], final=False)
    with pytest.raises(OutputSlotsError, match="max_new_tokens"):
        seq2.append_slots([12, 13], final=False)
    seq2.append_slots([12], final=True)
    assert seq2.num_output_tokens == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prompt": []},
        {"prompt": [1, -2]},
        {"max_new_tokens": 0},
        {"tau": float("nan")},
        {"tau": float("inf")},
    ],
)
def test_invalid_requests_are_rejected(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"prompt": [1, 2], "max_new_tokens": 4, "tau": 0.5, **kwargs}
    with pytest.raises(RequestError):
        Sequence(1, args["prompt"], pad_token_id=PAD, max_new_tokens=args["max_new_tokens"], tau=args["tau"])  # type: ignore[arg-type]


def test_pair_index_out_of_range() -> None:
    seq = make([5, 6, 7])
    with pytest.raises(IndexError):
        seq.pair_ids(2)
    with pytest.raises(IndexError):
        seq.pair_ids(-1)
    with pytest.raises(IndexError):
        seq.slot_ids(1, 3)


def test_tau_at_least_one_skips_the_mtp_kv() -> None:
    assert make([1], tau=0.95).writes_mtp_kv
    assert make([1], tau=-1.0).writes_mtp_kv
    assert not make([1], tau=1.0).writes_mtp_kv
