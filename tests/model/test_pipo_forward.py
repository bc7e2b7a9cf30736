"""`PipoModel` forward over each backbone against a hand-written composition (PIPO_SPEC B §2.3–2.5, §8.2, §8.4)."""

import copy
from collections.abc import Callable

import pytest
import torch
from torch.nn import functional as F
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from pipo_agent.backends.model import PAIR, PipoModel, PipoOutput

TOL = {"rtol": 1e-5, "atol": 1e-5}


def rms(x: torch.Tensor, weight: torch.Tensor, eps: float, offset: bool) -> torch.Tensor:
    """RMSNorm by hand: Qwen3.5 scales by (1 + w), the dense backbones by w."""
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return x * (1 + weight) if offset else x * weight


def by_hand(model: PipoModel, input_ids: torch.Tensor, position_step: int = 1) -> PipoOutput:
    """compressor -> HF base model on latents -> lm_head; fc([norm(E[x_{2j+2}]); norm(h_j)]) -> MTP layer
    -> norm -> lm_head. `position_step=2` gives pair j the token position 2j instead (the wrong choice)."""
    base = model.backbone.model
    offset = model.config.backbone["model_type"] == "qwen3_5_text"
    eps = model.backbone.config.rms_norm_eps
    emb, head = base.embed_tokens.weight, model.backbone.lm_head.weight
    batch, total = input_ids.shape
    pairs = total // 2
    hidden_size = emb.shape[1]

    x = F.embedding(input_ids, emb).reshape(batch, pairs, 2 * hidden_size)  # [B, L, 2H] = [e_2j; e_2j+1]
    c1, c2 = model.compressor.mlp[0], model.compressor.mlp[2]
    z = F.linear(F.silu(F.linear(x, c1.weight, c1.bias)), c2.weight, c2.bias)  # [B, L, H]
    pos = (torch.arange(pairs) * position_step)[None].expand(batch, -1)
    h = base(inputs_embeds=z, position_ids=pos).last_hidden_state  # [B, L, H]

    mtp, n = model.mtp, pairs - 1
    a = rms(F.embedding(input_ids[:, 2::2], emb), mtp.pre_fc_norm_embedding.weight, eps, offset)
    b = rms(h[:, :-1], mtp.pre_fc_norm_hidden.weight, eps, offset)
    u = F.linear(torch.cat([a, b], dim=-1), mtp.fc.weight)  # [B, L-1, H]
    mpos = (torch.arange(n) * position_step)[None].expand(batch, -1)
    mask = torch.full((n, n), torch.finfo(u.dtype).min).triu(1)[None, None]  # additive causal mask
    out = mtp.layers[0](
        u, position_embeddings=base.rotary_emb(u, mpos), attention_mask=mask, position_ids=mpos
    )
    m = rms(out[0] if isinstance(out, tuple) else out, mtp.norm.weight, eps, offset)
    return PipoOutput(hidden=h, mtp_hidden=m, logits1=F.linear(h[:, :-1], head), logits2=F.linear(m, head))


@torch.no_grad()
def test_shapes(backbone_name: str, pipo: Callable[..., PipoModel], ids: Callable[..., torch.Tensor]) -> None:
    model = pipo(backbone_name)
    out = model(ids(3, 10))
    assert out.hidden.shape == (3, 5, 32)
    assert out.mtp_hidden.shape == (3, 4, 32)
    assert out.logits1.shape == out.logits2.shape == (3, 4, 64)
    assert model.confidence_logits(out.hidden[:, :-1], out.mtp_hidden).shape == (3, 4)


@pytest.mark.parametrize("length", [3, 2, 0])
def test_rejects_odd_or_too_short_input(length: int, pipo: Callable[..., PipoModel]) -> None:
    with pytest.raises(ValueError, match="even length"):
        pipo("qwen3")(torch.ones(1, length, dtype=torch.long))


@torch.no_grad()
def test_forward_equals_hand_composition(
    backbone_name: str, pipo: Callable[..., PipoModel], ids: Callable[..., torch.Tensor]
) -> None:
    model = pipo(backbone_name)
    input_ids = ids(2, 12)
    out, ref = model(input_ids), by_hand(model, input_ids)
    for field in ("hidden", "mtp_hidden", "logits1", "logits2"):
        torch.testing.assert_close(getattr(out, field), getattr(ref, field), **TOL, msg=field)


@torch.no_grad()
def test_rope_position_of_pair_j_is_j(
    backbone_name: str, pipo: Callable[..., PipoModel], ids: Callable[..., torch.Tensor]
) -> None:
    """Token positions (2j) give different hidden states, so the match above pins positions to pairs."""
    model = pipo(backbone_name)
    input_ids = ids(2, 12)
    out, wrong = model(input_ids), by_hand(model, input_ids, position_step=PAIR)
    assert (out.hidden - wrong.hidden).abs().max() > 1e-3
    assert (out.mtp_hidden - wrong.mtp_hidden).abs().max() > 1e-3


def _incremental(model: PipoModel, input_ids: torch.Tensor, chunks: tuple[int, ...]) -> PipoOutput:
    """Prefill-then-decode order: each backbone chunk, then the MTP over the same pairs (MTP j needs x_{2j+2})."""
    backbone_cache, mtp_cache = model.new_caches()
    z = model.compress(input_ids)
    pairs = z.shape[1]
    token1 = input_ids[:, PAIR::PAIR]  # [B, L-1]
    hs, ms, start = [], [], 0
    for n in chunks:
        hs.append(model.run_backbone(z[:, start : start + n], start, backbone_cache))
        stop = min(start + n, pairs - 1)
        if stop > start:
            h_new = hs[-1][:, : stop - start]
            ms.append(model.run_mtp(token1[:, start:stop], h_new, start, mtp_cache))
        start += n
    assert start == pairs
    h, m = torch.cat(hs, dim=1), torch.cat(ms, dim=1)
    head = model.lm_head
    return PipoOutput(hidden=h, mtp_hidden=m, logits1=head(h[:, :-1]), logits2=head(m))


@pytest.mark.parametrize("chunks", [(1, 1, 1, 1, 1, 1), (3, 1, 2), (2, 4)])
@torch.no_grad()
def test_cached_chunks_equal_the_full_forward(
    chunks: tuple[int, ...],
    backbone_name: str,
    pipo: Callable[..., PipoModel],
    ids: Callable[..., torch.Tensor],
) -> None:
    model = pipo(backbone_name)
    input_ids = ids(2, 12)
    full, inc = model(input_ids), _incremental(model, input_ids, chunks)
    for field in ("hidden", "mtp_hidden", "logits1", "logits2"):
        torch.testing.assert_close(getattr(inc, field), getattr(full, field), **TOL, msg=field)


@torch.no_grad()
def test_start_is_the_rope_position_of_a_cached_step(
    backbone_name: str, pipo: Callable[..., PipoModel], ids: Callable[..., torch.Tensor]
) -> None:
    """One decode step after 3 cached pairs: `start=3` reproduces the full forward, a shifted start does not."""
    model = pipo(backbone_name)
    input_ids = ids(1, 10)
    full = model(input_ids)
    z, token1 = model.compress(input_ids), input_ids[:, PAIR::PAIR]

    def step(start: int) -> tuple[torch.Tensor, torch.Tensor]:
        backbone_cache, mtp_cache = model.new_caches()
        h_prefix = model.run_backbone(z[:, :3], 0, backbone_cache)
        model.run_mtp(token1[:, :3], h_prefix, 0, mtp_cache)
        h = model.run_backbone(z[:, 3:4], start, backbone_cache)
        return h, model.run_mtp(token1[:, 3:4], h, start, mtp_cache)

    h, m = step(3)
    torch.testing.assert_close(h, full.hidden[:, 3:4], **TOL)
    torch.testing.assert_close(m, full.mtp_hidden[:, 3:4], **TOL)
    h_shift, m_shift = step(9)
    assert (h_shift - h).abs().max() > 1e-3
    assert (m_shift - m).abs().max() > 1e-3


@torch.no_grad()
def test_right_padding_does_not_change_the_unpadded_rows(
    backbone_name: str, pipo: Callable[..., PipoModel], ids: Callable[..., torch.Tensor]
) -> None:
    model = pipo(backbone_name)
    pad = model.config.pad_token_id
    long, short = ids(1, 12, seed=1), ids(1, 8, seed=2)
    batch = torch.cat([long, F.pad(short, (0, 4), value=pad)])
    both = model(batch)
    alone_long, alone_short = model(long), model(short)
    for field in ("hidden", "mtp_hidden", "logits1", "logits2"):
        got = getattr(both, field)
        torch.testing.assert_close(got[:1], getattr(alone_long, field), **TOL, msg=field)
        expected = getattr(alone_short, field)
        torch.testing.assert_close(got[1:, : expected.shape[1]], expected, **TOL, msg=field)


def _teacher(backbone: dict[str, object], seed: int) -> PreTrainedModel:
    torch.manual_seed(seed)
    fields = dict(backbone)
    config = AutoConfig.for_model(str(fields.pop("model_type")), **fields)
    teacher = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed)
        for p in teacher.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return teacher.eval()


@torch.no_grad()
def test_from_teacher_copies_backbone_and_last_full_attention_layer(
    backbone_name: str, tiny: Callable[..., dict[str, object]]
) -> None:
    teacher = _teacher(tiny(backbone_name), seed=3)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    config_before = copy.deepcopy(teacher.config.to_dict())

    student = PipoModel.from_teacher(teacher, pad_token_id=1, eos_token_ids=(2,))
    assert student.config.pad_token_id == 1 and student.config.eos_token_ids == (2,)
    assert student.config.compressor_type == "mlp" and student.config.confidence_head == "hm"

    backbone_state = student.backbone.state_dict()
    assert backbone_state.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(backbone_state[key], value), key

    layer_types = getattr(teacher.config, "layer_types", None) or ["full_attention"] * len(
        teacher.model.layers
    )
    last_full = max(i for i, kind in enumerate(layer_types) if kind == "full_attention")
    if backbone_name == "qwen3_5_text":
        assert last_full == 3  # layers: linear, full, linear, full
    mtp_state = student.mtp.layers[0].state_dict()
    teacher_layer = teacher.model.layers[last_full].state_dict()
    assert mtp_state.keys() == teacher_layer.keys()
    for key, value in teacher_layer.items():
        assert torch.equal(mtp_state[key], value), key

    # The student owns its weights: training it must not touch the teacher.
    for p in student.parameters():
        p.add_(1.0)
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert teacher.config.to_dict() == config_before


@torch.no_grad()
def test_from_teacher_leaves_a_bf16_teacher_in_bf16(tiny: Callable[..., dict[str, object]]) -> None:
    teacher = _teacher(tiny("qwen3"), seed=4).to(torch.bfloat16)
    student = PipoModel.from_teacher(teacher, pad_token_id=1)
    assert teacher.model.embed_tokens.weight.dtype == torch.bfloat16
    assert student.embed_tokens.weight.dtype == torch.float32
    assert torch.equal(student.embed_tokens.weight, teacher.model.embed_tokens.weight.float())
