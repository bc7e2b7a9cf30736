"""Confidence heads: the published `hm` head and the token-aware `token` head (PIPO_SPEC B §2.6, A2)."""

from collections.abc import Callable

import pytest
import torch
from torch.nn import functional as F

from pipo_agent.backends.model import (
    CONFIDENCE_HEADS,
    ModelConfigError,
    PipoConfig,
    PipoModel,
    build_confidence_head,
)

H = 16


def rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_registry_names_the_valid_choices_on_an_unknown_name() -> None:
    assert CONFIDENCE_HEADS.names() == ["hm", "token"]
    with pytest.raises(ModelConfigError, match=r"'mlp'.*valid choices: hm, token"):
        build_confidence_head("mlp", H)
    with pytest.raises(ModelConfigError, match="valid choices: hm, token"):
        PipoConfig(backbone={"model_type": "qwen3"}, pad_token_id=0, confidence_head="mlp")


def test_hm_head_shape_and_formula() -> None:
    head = build_confidence_head("hm", H)
    with torch.no_grad():
        head.norm.weight.copy_(rand(2 * H, seed=9) * 0.1)
    h, m = rand(2, 5, H, seed=1), rand(2, 5, H, seed=2)
    out = head(h, m)
    assert out.shape == (2, 5)
    x = torch.cat([h, m], dim=-1)  # order [backbone ; mtp]
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * (1 + head.norm.weight)
    expected = F.linear(F.silu(F.linear(x, head.fc1.weight)), head.fc2.weight).squeeze(-1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert sum(p.numel() for p in head.parameters()) == 2 * H * H + 3 * H


def test_token_head_at_init_reads_the_draft_probability() -> None:
    head = build_confidence_head("token", H)
    assert torch.count_nonzero(head.fc2.weight) == 0
    p = torch.tensor([[0.01, 0.2, 0.5], [0.75, 0.9, 0.999]])
    h, m, draft = rand(2, 3, H, seed=1), rand(2, 3, H, seed=2), rand(2, 3, H, seed=3)
    out = head(h, m, draft, p.log())
    assert out.shape == (2, 3)
    torch.testing.assert_close(out, torch.logit(p), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.sigmoid(out), p, rtol=0, atol=1e-6)


def test_token_head_without_draft_inputs_raises() -> None:
    head = build_confidence_head("token", H)
    h, m = rand(1, 2, H, seed=1), rand(1, 2, H, seed=2)
    with pytest.raises(ValueError, match="draft"):
        head(h, m)
    with pytest.raises(ValueError, match="draft"):
        head(h, m, draft_embeds=rand(1, 2, H, seed=3))


def test_token_head_through_the_model_uses_the_mtp_probability_of_the_draft(
    pipo: Callable[..., PipoModel], ids: Callable[..., torch.Tensor]
) -> None:
    model = pipo("qwen3", confidence_head="token")
    with torch.no_grad():
        model.confidence_head.fc2.weight.zero_()
        model.confidence_head.logprob_scale.fill_(1.0)
        model.confidence_head.bias.zero_()
        out = model(ids(2, 8))
        draft = out.logits2.argmax(-1)
        conf = model.confidence_logits(out.hidden[:, :-1], out.mtp_hidden, draft, out.logits2)
    p = out.logits2.softmax(-1).gather(-1, draft[..., None]).squeeze(-1)
    assert conf.shape == draft.shape
    torch.testing.assert_close(torch.sigmoid(conf), p, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="draft_ids"):
        model.confidence_logits(out.hidden[:, :-1], out.mtp_hidden)
