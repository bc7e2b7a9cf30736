"""PIPO losses against hand computations: index alignment (Part B §8.2), SFT terms and their detach rules
(§3.2.2), PAD-compacted teacher (§3.3.4, §8.5), analytic reverse KL, acceptance and the OPD alignment slices,
argmax filling and masks (§3.3.5-§3.3.7, §3.4.1)."""

import random
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from pipo_agent.backends.model.constants import IGNORE_INDEX
from pipo_agent.backends.model.pipo import PipoModel, PipoOutput
from pipo_agent.backends.train.augment import pair_response, rollout_sample
from pipo_agent.backends.train.batching import collate
from pipo_agent.backends.train.losses import (
    acceptance,
    opd_losses,
    pad_compacted_teacher_logits,
    reverse_kl,
    sft_losses,
    targets,
)
from pipo_agent.backends.train.sft import freeze_embeddings

PAD = 1
V = 64


def _bce(logit: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return -(q * F.logsigmoid(logit) + (1 - q) * F.logsigmoid(-logit))


def _kl(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    ps = torch.softmax(s.double(), -1)
    return (ps * (torch.log_softmax(s.double(), -1) - torch.log_softmax(t.double(), -1))).sum()


# ---- index alignment ----


def test_targets_are_the_even_and_odd_slots_after_the_first_pair() -> None:
    labels = torch.arange(12)[None].repeat(2, 1)  # T = 12, L = 6
    y_bb, y_mtp = targets(labels)
    assert y_bb.shape == y_mtp.shape == (2, 5)  # L - 1
    assert y_bb[0].tolist() == [2, 4, 6, 8, 10]  # x_{2j+2}
    assert y_mtp[0].tolist() == [3, 5, 7, 9, 11]  # x_{2j+3}


def test_mtp_at_pair_j_is_fed_x_2j_plus_2(
    pipo: Callable[..., PipoModel], random_ids: Callable[..., torch.Tensor]
) -> None:
    model = pipo()
    ids = random_ids(1, 12)
    with torch.no_grad():
        out = model(ids)
        torch.testing.assert_close(out.mtp_hidden, model.run_mtp(ids[:, 2::2], out.hidden[:, :-1]))
        changed = ids.clone()
        changed[0, 6] = (changed[0, 6] + 1) % 62 + 2  # x_6: token1 of pair 3, MTP input of j = 2
        other = model(changed)
    assert torch.equal(other.hidden[:, :3], out.hidden[:, :3])  # h_0..h_2 do not see x_6
    assert torch.equal(other.mtp_hidden[:, :2], out.mtp_hidden[:, :2])
    assert not torch.allclose(other.mtp_hidden[:, 2], out.mtp_hidden[:, 2])  # so x_6 enters MTP j=2 directly
    with torch.no_grad():
        changed = ids.clone()
        changed[0, 7] = (changed[0, 7] + 1) % 62 + 2  # x_7 = x_{2j+3} of j = 2: its target, not an input
        other = model(changed)
    assert torch.equal(other.mtp_hidden[:, :3], out.mtp_hidden[:, :3])


@pytest.mark.parametrize("slot", [2, 5, 8, 11])
def test_a_single_label_is_the_target_of_the_matching_pair(
    slot: int, pipo: Callable[..., PipoModel], random_ids: Callable[..., torch.Tensor]
) -> None:
    model = pipo()
    ids = random_ids(1, 12, seed=slot)
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[0, slot] = ids[0, slot]
    with torch.no_grad():
        out = model(ids)
        parts = sft_losses(model, out, labels)
    j = (slot - 2) // 2
    if slot % 2 == 0:  # backbone of pair j predicts x_{2j+2}
        expected = F.cross_entropy(out.logits1[0, j], ids[0, slot])
        assert (parts.n_backbone, parts.n_mtp) == (1, 0)
        torch.testing.assert_close(parts.backbone, expected)
        assert float(parts.mtp) == 0.0
    else:  # MTP of pair j predicts x_{2j+3}
        expected = F.cross_entropy(out.logits2[0, j], ids[0, slot])
        assert (parts.n_backbone, parts.n_mtp) == (0, 1)
        torch.testing.assert_close(parts.mtp, expected)
        assert float(parts.backbone) == 0.0


# ---- SFT ----


def _sft_batch() -> tuple[torch.Tensor, torch.Tensor]:
    rng = random.Random(3)
    seqs = []
    for prompt_len, response_len in ((5, 17), (8, 10)):
        prompt = [rng.randrange(2, V) for _ in range(prompt_len)]
        response = [rng.randrange(2, V) for _ in range(response_len)]
        sample = pair_response(prompt, response, PAD, 0.4, rng)
        seqs.append((sample.input_ids, sample.labels))
    ids, labels = collate(seqs, PAD, multiple=2)
    # The batch must exercise the masks: a PAD inside a response and right padding in the shorter row.
    assert any(ids[0, i] == PAD for i in range(7, 20, 2))
    assert labels[1, -1] == IGNORE_INDEX
    return ids, labels


@pytest.mark.parametrize(("lambda_mtp", "lambda_conf"), [(1.0, 1.0), (0.5, 2.0)])
def test_sft_terms_match_a_hand_computation(
    lambda_mtp: float, lambda_conf: float, pipo: Callable[..., PipoModel]
) -> None:
    model = pipo()
    ids, labels = _sft_batch()
    with torch.no_grad():
        out = model(ids)
        parts = sft_losses(model, out, labels, lambda_mtp, lambda_conf)
    bb, mtp, conf = [], [], []
    for b in range(ids.shape[0]):
        for j in range(ids.shape[1] // 2 - 1):
            y = int(labels[b, 2 * j + 2])
            if y != IGNORE_INDEX:
                bb.append(-torch.log_softmax(out.logits1[b, j], -1)[y])
            y = int(labels[b, 2 * j + 3])
            if y != IGNORE_INDEX:
                assert ids[b, 2 * j + 3] != PAD
                logp = torch.log_softmax(out.logits2[b, j], -1)[y]
                mtp.append(-logp)
                c = model.confidence_head(out.hidden[b, j], out.mtp_hidden[b, j])
                conf.append(_bce(c, logp.exp()))  # q = p_s^{MTP}(gold)
    n_response = int((labels != IGNORE_INDEX).sum())
    assert parts.n_backbone == len(bb) and parts.n_mtp == len(mtp)
    assert len(bb) + len(mtp) == n_response - int((labels[:, :2] != IGNORE_INDEX).sum())
    torch.testing.assert_close(parts.backbone, torch.stack(bb).mean())
    torch.testing.assert_close(parts.mtp, torch.stack(mtp).mean())
    torch.testing.assert_close(parts.conf, torch.stack(conf).mean())
    expected = parts.backbone + lambda_mtp * parts.mtp + lambda_conf * parts.conf
    torch.testing.assert_close(parts.total, expected)


def _grads(model: PipoModel, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {
        name: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
        for name, p in model.named_parameters()
    }


@pytest.mark.parametrize("head", ["hm", "token"])
def test_sft_confidence_loss_trains_only_the_confidence_head(
    head: str, pipo: Callable[..., PipoModel]
) -> None:
    """Conf target and conf-head inputs are detached: L_conf reaches the conf head and nothing else, and
    the CE terms never reach the conf head."""
    model = pipo(confidence_head=head)
    if head == "token":
        # The token-aware head embeds the draft with the (frozen in every stage) input embeddings, and
        # that lookup is not detached; the guarantee holds under training's frozen embeddings.
        freeze_embeddings(model)
    ids, labels = _sft_batch()

    def loss(lambda_conf: float) -> torch.Tensor:
        gen = torch.Generator().manual_seed(0)
        return sft_losses(model, model(ids), labels, 1.0, lambda_conf, gen).total

    with_conf = _grads(model, loss(1.0))
    without = _grads(model, loss(0.0))
    head = [name for name in with_conf if name.startswith("confidence_head.")]
    assert head
    for name in with_conf:
        if name.startswith("confidence_head."):
            assert without[name].abs().max() == 0, name
            assert with_conf[name].abs().max() > 0, name
        else:
            torch.testing.assert_close(with_conf[name], without[name], rtol=0, atol=1e-7, msg=name)
    assert without["compressor.mlp.0.weight"].abs().max() > 0
    assert without["mtp.fc.weight"].abs().max() > 0


def test_token_aware_head_trains_on_sampled_drafts(pipo: Callable[..., PipoModel]) -> None:
    model = pipo(confidence_head="token")
    ids, labels = _sft_batch()
    with torch.no_grad():
        out = model(ids)
        a = sft_losses(model, out, labels, generator=torch.Generator().manual_seed(0))
        b = sft_losses(model, out, labels, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.conf, b.conf) and torch.isfinite(a.conf)
    assert torch.equal(a.backbone, b.backbone)


# ---- PAD compaction ----


def test_pad_compacted_teacher_matches_the_pad_free_run(teacher: Callable[..., PreTrainedModel]) -> None:
    model = teacher()
    ids = torch.tensor([[5, 6, 7, PAD, 8, 9, 10, 11, 12, PAD, 13, PAD, 14, 15, 16, PAD]])
    with torch.no_grad():
        logits = pad_compacted_teacher_logits(model, ids, PAD)
        free = ids[:, ids[0] != PAD]
        reference = model(input_ids=free).logits
    assert logits.shape == (1, ids.shape[1], V)
    k = -1
    for p, token in enumerate(ids[0].tolist()):
        if token != PAD:
            k += 1
            torch.testing.assert_close(logits[0, p], reference[0, k], rtol=1e-5, atol=1e-5)
        else:  # the teacher conditioned on the PAD-free prefix: the previous non-PAD state
            assert torch.equal(logits[0, p], logits[0, p - 1])
    assert k + 1 == free.shape[1]


def test_pad_compaction_works_one_sequence_at_a_time(teacher: Callable[..., PreTrainedModel]) -> None:
    with pytest.raises(ValueError, match="one sequence"):
        pad_compacted_teacher_logits(teacher(), torch.full((2, 4), 3), PAD)


# ---- reverse KL and acceptance ----


def test_full_reverse_kl_matches_a_hand_computation() -> None:
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 5, V, generator=gen) * 2, torch.randn(3, 5, V, generator=gen) * 2
    kl = reverse_kl(s, t, "full")
    assert kl.shape == (3, 5)
    expected = torch.stack([_kl(s[a, b], t[a, b]) for a in range(3) for b in range(5)]).view(3, 5)
    torch.testing.assert_close(kl.double(), expected, rtol=1e-5, atol=1e-6)
    assert (kl >= 0).all()
    assert reverse_kl(s, s, "full").abs().max() < 1e-5


@pytest.mark.parametrize("k", [1, 5, 32])
def test_topk_reverse_kl_is_the_kl_on_the_union_of_both_topk(k: int) -> None:
    gen = torch.Generator().manual_seed(k)
    s, t = torch.randn(4, V, generator=gen) * 3, torch.randn(4, V, generator=gen) * 3
    kl = reverse_kl(s, t, "topk", topk=k)
    for row in range(4):
        union = sorted(set(s[row].topk(k).indices.tolist()) | set(t[row].topk(k).indices.tolist()))
        assert len(union) > k or k == V
        expected = _kl(s[row, union], t[row, union])  # both renormalised on the union
        torch.testing.assert_close(kl[row].double(), expected, rtol=1e-5, atol=1e-6)
    assert (kl >= 0).all()
    assert reverse_kl(s, s, "topk", topk=k).abs().max() < 1e-5
    torch.testing.assert_close(reverse_kl(s, t, "topk", topk=V), reverse_kl(s, t, "full"))


def test_unknown_kl_mode_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="full, topk"):
        reverse_kl(torch.zeros(2, V), torch.zeros(2, V), "sampled")


def test_acceptance_is_the_clipped_ratio_and_detached() -> None:
    gen = torch.Generator().manual_seed(0)
    s = (torch.randn(50, V, generator=gen) * 2).requires_grad_()
    t = torch.randn(50, V, generator=gen) * 2
    y = torch.randint(0, V, (50,), generator=gen)
    alpha = acceptance(s, t, y)
    assert not alpha.requires_grad
    ps = torch.softmax(s.detach().double(), -1).gather(-1, y[:, None])[:, 0]
    pt = torch.softmax(t.double(), -1).gather(-1, y[:, None])[:, 0]
    torch.testing.assert_close(alpha.double(), torch.clamp(pt / ps, max=1.0), rtol=1e-5, atol=1e-7)
    assert ((alpha >= 0) & (alpha <= 1)).all()
    assert (alpha < 1).any() and (alpha == 1).any()
    assert torch.equal(acceptance(t, t, y), torch.ones(50))


def test_analytic_kl_gradient_descends_where_the_sampled_estimator_has_zero_mean() -> None:
    """Part B §3.4.1: E_{y~p_s}[grad(log p_s(y) - log p_t(y))] = 0, while the analytic KL's gradient is
    non-zero and a small step along it lowers the KL."""
    gen = torch.Generator().manual_seed(0)
    s = (torch.randn(6, V, generator=gen) * 2).requires_grad_()
    t = torch.randn(6, V, generator=gen) * 2
    kl = reverse_kl(s, t, "full")
    (grad,) = torch.autograd.grad(kl.sum(), s)
    assert grad.norm(dim=-1).min() > 1e-3
    with torch.no_grad():
        assert (reverse_kl(s - 0.1 * grad, t, "full") < kl).all()
    # The sampled loss k(y) averaged over y with the (fixed) sampling weights p_s: its gradient is exactly
    # the mean of the per-sample gradients, and it vanishes.
    weights = torch.softmax(s.detach(), -1)
    sampled = (weights * (torch.log_softmax(s, -1) - torch.log_softmax(t, -1))).sum()
    (expected_sampled_grad,) = torch.autograd.grad(sampled, s)
    assert expected_sampled_grad.abs().max() < 1e-6


# ---- OPD ----

PROMPT = [2, 3, 4, 5, 6]  # odd: padded to 6 slots, 3 prompt pairs
SLOTS = [10, 11, 12, PAD, 13, 14, 15]  # slot 9 is a rejected draft; odd: a parity PAD closes the sequence


def _rollout() -> tuple[torch.Tensor, torch.Tensor]:
    sample = rollout_sample(PROMPT, SLOTS, PAD)
    assert sample.input_ids == [2, 3, 4, 5, 6, PAD, 10, 11, 12, PAD, 13, 14, 15, PAD]
    return torch.tensor([sample.input_ids]), torch.tensor([sample.labels])


def _aligned_teacher(out: PipoOutput, total: int) -> torch.Tensor:
    """Teacher logits built so that KL is zero exactly when backbone j reads slot 2j+1 and MTP j slot 2j+2."""
    teacher = torch.randn(1, total, V, generator=torch.Generator().manual_seed(5)) * 3
    for j in range(total // 2 - 1):
        teacher[0, 2 * j + 1] = out.logits1[0, j]
        teacher[0, 2 * j + 2] = out.logits2[0, j]
    return teacher


def _opd(model: PipoModel, out: PipoOutput, teacher: torch.Tensor, mode: str = "full") -> object:
    ids, labels = _rollout()
    return opd_losses(model, out, teacher, labels, ids, PAD, kl_mode=mode, topk=8)


@pytest.mark.parametrize("mode", ["full", "topk"])
def test_opd_alignment_slices(mode: str, pipo: Callable[..., PipoModel]) -> None:
    model = pipo()
    ids, _ = _rollout()
    with torch.no_grad():
        out = model(ids)
        teacher = _aligned_teacher(out, ids.shape[1])
        parts = _opd(model, out, teacher, mode)
        assert parts.backbone.abs() < 1e-5 and parts.mtp.abs() < 1e-5
        # Backbone targets: slots 6, 8, 10, 12; MTP targets: slots 7, 9 (the filled PAD), 11 — not the
        # parity PAD at 13 and not the prompt.
        assert (parts.n_backbone, parts.n_mtp) == (4, 3)
        # Shifting either slice by one slot breaks the match.
        shifted = torch.roll(teacher, 1, dims=1)
        parts = _opd(model, out, shifted, mode)
        assert parts.backbone > 1e-2 and parts.mtp > 1e-2
        # The prompt's slots (0..4) and the MTP slot of the parity PAD (12) are never read.
        garbage = teacher.clone()
        garbage[0, :5] = torch.randn(5, V) * 5
        garbage[0, 12] += torch.randn(V) * 5
        parts = _opd(model, out, garbage, mode)
        assert parts.backbone.abs() < 1e-5 and parts.mtp.abs() < 1e-5
        # The teacher slot that scores the rejected draft (MTP j=3 at slot 8) still counts.
        rejected = teacher.clone()
        rejected[0, 8] += torch.randn(V) * 5
        parts = _opd(model, out, rejected, mode)
        assert parts.backbone.abs() < 1e-5 and parts.mtp > 1e-2


def test_opd_losses_match_a_hand_computation(pipo: Callable[..., PipoModel]) -> None:
    model = pipo()
    ids, labels = _rollout()
    with torch.no_grad():
        out = model(ids)
        teacher = torch.randn(1, ids.shape[1], V, generator=torch.Generator().manual_seed(9)) * 2
        parts = opd_losses(model, out, teacher, labels, ids, PAD, lambda_mtp=0.5, lambda_conf=2.0)
    bb = [_kl(out.logits1[0, j], teacher[0, 2 * j + 1]) for j in (2, 3, 4, 5)]
    mtp, conf = [], []
    for j in (2, 3, 4):
        s, t = out.logits2[0, j], teacher[0, 2 * j + 2]
        mtp.append(_kl(s, t))
        # The rejected draft's target (slot 9, j = 3) is the student's argmax.
        y = int(s.argmax()) if j == 3 else int(labels[0, 2 * j + 3])
        alpha = min(1.0, float(torch.softmax(t.double(), -1)[y] / torch.softmax(s.double(), -1)[y]))
        c = model.confidence_head(out.hidden[0, j], out.mtp_hidden[0, j]).double()
        conf.append(_bce(c, torch.tensor(alpha, dtype=torch.float64)))
    torch.testing.assert_close(parts.backbone.double(), torch.stack(bb).mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(parts.mtp.double(), torch.stack(mtp).mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(parts.conf.double(), torch.stack(conf).mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(parts.total, parts.backbone + 0.5 * parts.mtp + 2.0 * parts.conf)


def test_opd_confidence_loss_trains_only_the_confidence_head(pipo: Callable[..., PipoModel]) -> None:
    model = pipo()
    ids, _ = _rollout()
    teacher = torch.randn(1, ids.shape[1], V, generator=torch.Generator().manual_seed(2)) * 2
    with_conf = _grads(model, _opd(model, model(ids), teacher).total)
    without = _grads(model, _opd(model, model(ids), teacher).total - _opd(model, model(ids), teacher).conf)
    for name in with_conf:
        if not name.startswith("confidence_head."):
            torch.testing.assert_close(with_conf[name], without[name], rtol=0, atol=1e-7, msg=name)
        else:
            assert with_conf[name].abs().max() > 0, name


def test_one_opd_step_on_a_fixed_teacher_lowers_the_kl(pipo: Callable[..., PipoModel]) -> None:
    model = pipo()
    ids, labels = _rollout()
    teacher = torch.randn(1, ids.shape[1], V, generator=torch.Generator().manual_seed(4)) * 2
    before = opd_losses(model, model(ids), teacher, labels, ids, PAD, lambda_conf=0.0)
    model.zero_grad()
    before.total.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.05 * p.grad
        after = opd_losses(model, model(ids), teacher, labels, ids, PAD, lambda_conf=0.0)
    assert after.backbone < before.backbone and after.mtp < before.mtp


def test_token_weights_weight_the_backbone_and_mtp_means_by_target(pipo: Callable[..., PipoModel]) -> None:
    model = pipo()
    ids, labels = _sft_batch()
    y_bb, y_mtp = targets(labels)
    heavy = int(y_bb[y_bb != IGNORE_INDEX][0])  # the first backbone target
    weights = torch.ones(V)
    weights[heavy] = 4.0
    with torch.no_grad():
        out = model(ids)
        plain = sft_losses(model, out, labels)
        same = sft_losses(model, out, labels, token_weights=torch.ones(V))
        weighted = sft_losses(model, out, labels, token_weights=weights)
    torch.testing.assert_close(same.total, plain.total)
    for logits, y, got in ((out.logits1, y_bb, weighted.backbone), (out.logits2, y_mtp, weighted.mtp)):
        num, den = torch.zeros((), dtype=torch.float64), 0.0
        for b, j in (y != IGNORE_INDEX).nonzero().tolist():
            w = float(weights[int(y[b, j])])
            num += w * -torch.log_softmax(logits[b, j].double(), -1)[int(y[b, j])]
            den += w
        torch.testing.assert_close(got.double(), num / den, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(weighted.backbone, plain.backbone)
    torch.testing.assert_close(weighted.conf, plain.conf)  # confidence losses stay plain means
