"""The optimizer loop: an interrupted run resumed from its periodic checkpoint ends bit-equal to an
uninterrupted one (model, optimizer and RNG states all restored; batches are a function of the step)."""

import itertools
import random
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from pipo_agent.backends.model.pipo import PipoModel
from pipo_agent.backends.train.augment import pair_response
from pipo_agent.backends.train.batching import EpochSchedule, collate
from pipo_agent.backends.train.config import OptimConfig
from pipo_agent.backends.train.loop import STATE_NAME, lr_at, train
from pipo_agent.backends.train.losses import sft_losses
from pipo_agent.backends.train.sft import freeze_embeddings

PAD = 1
CFG = OptimConfig(lr=1e-2, warmup_ratio=0.3, max_steps=7, token_budget=64, save_every=2, seed=3)


class Interrupted(Exception):
    pass


def _data() -> list[tuple[list[int], list[int]]]:
    rng = random.Random(0)
    return [
        (
            [rng.randrange(2, 64) for _ in range(rng.randrange(3, 8))],
            [rng.randrange(2, 64) for _ in range(12)],
        )
        for _ in range(6)
    ]


def _run(model: PipoModel, work: Path, crash_at: int | None = None) -> dict[str, float]:
    data = _data()
    schedule = EpochSchedule([len(p) + len(r) for p, r in data], CFG.token_budget, CFG.seed)
    freeze_embeddings(model)

    def step_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        if step == crash_at:
            raise Interrupted
        # Both global generators are consumed, so an exact resume must restore them too.
        rng = random.Random(random.random())
        seqs = []
        for i in schedule.batch(step):
            sample = pair_response(*data[i], PAD, 0.3, rng)
            seqs.append((sample.input_ids, sample.labels))
        ids, labels = collate(seqs, PAD, multiple=2)
        parts = sft_losses(model, model(ids), labels)
        loss = parts.total * (1 + torch.rand(()))
        return loss, {"loss": float(loss.detach())}

    return train(model, step_fn, CFG, work, desc="test")


def test_resume_after_an_interruption_is_bit_exact(pipo: Callable[..., PipoModel], tmp_path: Path) -> None:
    straight = pipo(seed=0)
    initial = {k: v.clone() for k, v in straight.state_dict().items()}
    _run(straight, tmp_path / "straight")

    first = pipo(seed=0)
    with pytest.raises(Interrupted):
        _run(first, tmp_path / "resumed", crash_at=5)  # steps 0..4 ran; the last checkpoint is at step 4
    state = torch.load(tmp_path / "resumed" / STATE_NAME, weights_only=False)
    assert state["step"] == 4
    # A new process: new model (even other weights, which the checkpoint must overwrite), new optimizer.
    resumed = pipo(seed=123)
    _run(resumed, tmp_path / "resumed")

    final, expected = resumed.state_dict(), straight.state_dict()
    assert final.keys() == expected.keys()
    for key in expected:
        assert torch.equal(final[key], expected[key]), key
    assert not torch.equal(expected["mtp.fc.weight"], initial["mtp.fc.weight"])  # training did something
    assert torch.equal(
        expected["backbone.model.embed_tokens.weight"], initial["backbone.model.embed_tokens.weight"]
    )
    assert not resumed.training


def test_a_finished_run_leaves_no_state_behind_the_last_checkpoint(
    pipo: Callable[..., PipoModel], tmp_path: Path
) -> None:
    _run(pipo(), tmp_path)
    assert torch.load(tmp_path / STATE_NAME, weights_only=False)["step"] == 6
    assert not list(tmp_path.glob("*.tmp"))


def test_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    cfg = OptimConfig(lr=1.0, warmup_ratio=0.1, min_lr_ratio=0.1, max_steps=100)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] >= 0.1 and lrs[-1] < 0.11
    flat = OptimConfig(lr=2.0, warmup_ratio=0.0, max_steps=10)
    assert lr_at(0, flat) == pytest.approx(2.0)
