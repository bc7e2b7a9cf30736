"""A checkpoint in the published PIPO layout (PIPO_SPEC B §2.8), written by hand, loads with `load_pipo` and
computes what its raw tensors say, through separately built Hugging Face Qwen3.5 modules."""

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch.nn import functional as F
from transformers import Qwen3_5Config, Qwen3_5ForCausalLM
from transformers.models.qwen3_5.modeling_qwen3_5 import Qwen3_5DecoderLayer, Qwen3_5RMSNorm

from pipo_agent.backends.model import PipoModel, load_pipo

H, V, PAD, EOS, EPS = 32, 64, 7, 9, 1e-6
TEXT: dict[str, Any] = {
    "model_type": "qwen3_5_text",
    "vocab_size": V,
    "hidden_size": H,
    "intermediate_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "linear_num_key_heads": 2,
    "linear_num_value_heads": 4,
    "linear_key_head_dim": 8,
    "linear_value_head_dim": 8,
    "linear_conv_kernel_dim": 4,
    "full_attention_interval": 2,
    "layer_types": ["linear_attention", "full_attention", "linear_attention", "full_attention"],
    "rms_norm_eps": EPS,
    "hidden_act": "silu",
    "attention_bias": False,
    "attn_output_gate": True,
    "max_position_embeddings": 256,
    "mamba_ssm_dtype": "float32",
    "mlp_only_layers": [],
    "mtp_num_hidden_layers": 1,
    "mtp_use_dedicated_embeddings": False,
    "dtype": "bfloat16",
    "eos_token_id": EOS,
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 10000000.0,
        "partial_rotary_factor": 0.25,
        "mrope_section": [1, 1, 0],
        "mrope_interleaved": True,
    },
}


def published_config(tied: bool, tie_in_text_config: bool = True) -> dict[str, Any]:
    text = dict(TEXT)
    if tie_in_text_config:
        text["tie_word_embeddings"] = tied
    return {
        "architectures": ["Qwen3_5ForConditionalGeneration"],
        "model_type": "qwen3_5",
        "text_config": text,
        "vision_config": {
            "model_type": "qwen3_5_vision",
            "depth": 1,
            "hidden_size": 16,
            "out_hidden_size": H,
        },
        "image_token_id": 60,
        "video_token_id": 61,
        "tie_word_embeddings": tied,
        "transformers_version": "5.3.0",
        "compressor_type": "mlp",
        "pad_token_id": PAD,
    }


def _noise(*shape: int, gen: torch.Generator, scale: float = 0.1) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * scale


def _reference_backbone(config: dict[str, Any]) -> Qwen3_5ForCausalLM:
    """Built the way Hugging Face reads the published config: its `text_config`."""
    text = Qwen3_5Config.from_dict(config).text_config
    text.tie_word_embeddings = config["tie_word_embeddings"]
    return Qwen3_5ForCausalLM(text).float().eval()


def _mtp_layer(config: dict[str, Any]) -> Qwen3_5DecoderLayer:
    text = Qwen3_5Config.from_dict(config).text_config
    text.num_hidden_layers, text.layer_types = 1, ["full_attention"]
    return Qwen3_5DecoderLayer(text, 0).float().eval()


@torch.no_grad()
def published_tensors(
    config: dict[str, Any], seed: int = 0, compressor: bool = True
) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    backbone = _reference_backbone(config)
    for key, value in backbone.state_dict().items():
        value = value + _noise(*value.shape, gen=gen)  # norms away from 0 so (1 + w) vs w shows
        if key.startswith("model."):
            tensors["model.language_model." + key.removeprefix("model.")] = value
        elif not config["tie_word_embeddings"]:
            tensors[key] = value  # lm_head.weight
    for key, value in _mtp_layer(config).state_dict().items():
        tensors["mtp.layers.0." + key] = value + _noise(*value.shape, gen=gen)
    tensors["mtp.fc.weight"] = _noise(H, 2 * H, gen=gen, scale=0.2)
    for name in ("pre_fc_norm_embedding", "pre_fc_norm_hidden", "norm"):
        tensors[f"mtp.{name}.weight"] = _noise(H, gen=gen)
    if compressor:
        tensors["compressor.mlp.0.weight"] = torch.eye(2 * H) + _noise(2 * H, 2 * H, gen=gen)
        tensors["compressor.mlp.0.bias"] = _noise(2 * H, gen=gen)
        tensors["compressor.mlp.2.weight"] = torch.eye(H).repeat(1, 2) + _noise(H, 2 * H, gen=gen)
        tensors["compressor.mlp.2.bias"] = _noise(H, gen=gen)
    tensors["confidence_head.norm.weight"] = _noise(2 * H, gen=gen)
    tensors["confidence_head.fc1.weight"] = _noise(H, 2 * H, gen=gen, scale=0.2)
    tensors["confidence_head.fc2.weight"] = _noise(1, H, gen=gen, scale=0.2)
    # The vision tower of the multimodal checkpoint: a text model ignores it.
    tensors["model.visual.patch_embed.proj.weight"] = _noise(16, 3, 2, 16, 16, gen=gen)
    tensors["model.visual.blocks.0.attn.qkv.weight"] = _noise(48, 16, gen=gen)
    tensors["model.visual.merger.linear_fc2.weight"] = _noise(H, 64, gen=gen)
    return {k: v.contiguous() for k, v in tensors.items()}


def write_checkpoint(directory: Path, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory


def rms_1pw(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * (1 + weight)


@torch.no_grad()
def by_hand(
    raw: dict[str, torch.Tensor], config: dict[str, Any], input_ids: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The published PIPO forward from the file's tensors, with HF's own Qwen3.5 modules for the layers."""
    backbone = _reference_backbone(config)
    prefix = "model.language_model."
    state = {"model." + k.removeprefix(prefix): v for k, v in raw.items() if k.startswith(prefix)}
    state["lm_head.weight"] = raw.get("lm_head.weight", raw[prefix + "embed_tokens.weight"])
    backbone.load_state_dict(state, strict=True)
    layer = _mtp_layer(config)
    layer.load_state_dict(
        {k.removeprefix("mtp.layers.0."): v for k, v in raw.items() if k.startswith("mtp.layers.0.")}
    )
    norms = {}
    for name in ("pre_fc_norm_embedding", "pre_fc_norm_hidden", "norm"):
        norms[name] = Qwen3_5RMSNorm(H, eps=EPS)
        norms[name].weight.copy_(raw[f"mtp.{name}.weight"])

    batch, total = input_ids.shape
    pairs = total // 2
    emb = raw[prefix + "embed_tokens.weight"]
    x = F.embedding(input_ids, emb).reshape(batch, pairs, 2 * H)  # [B, L, 2H]
    hidden = F.silu(F.linear(x, raw["compressor.mlp.0.weight"], raw["compressor.mlp.0.bias"]))
    z = F.linear(hidden, raw["compressor.mlp.2.weight"], raw["compressor.mlp.2.bias"])  # [B, L, H]
    pos = torch.arange(pairs)[None].expand(batch, -1)
    h = backbone.model(inputs_embeds=z, position_ids=pos).last_hidden_state  # [B, L, H]

    n = pairs - 1
    a = norms["pre_fc_norm_embedding"](F.embedding(input_ids[:, 2::2], emb))
    u = F.linear(torch.cat([a, norms["pre_fc_norm_hidden"](h[:, :-1])], dim=-1), raw["mtp.fc.weight"])
    mpos = torch.arange(n)[None].expand(batch, -1)
    mask = torch.full((n, n), torch.finfo(u.dtype).min).triu(1)[None, None]
    out = layer(
        u, position_embeddings=backbone.model.rotary_emb(u, mpos), attention_mask=mask, position_ids=mpos
    )
    m = norms["norm"](out[0] if isinstance(out, tuple) else out)  # [B, L-1, H]

    c = rms_1pw(torch.cat([h[:, :-1], m], dim=-1), raw["confidence_head.norm.weight"])
    conf = F.linear(F.silu(F.linear(c, raw["confidence_head.fc1.weight"])), raw["confidence_head.fc2.weight"])
    return {
        "hidden": h,
        "mtp_hidden": m,
        "logits1": backbone.lm_head(h[:, :-1]),
        "logits2": backbone.lm_head(m),
        "conf": conf.squeeze(-1),
    }


@pytest.mark.parametrize("tied", [True, False])
@torch.no_grad()
def test_published_checkpoint_computes_its_raw_tensors(tied: bool, tmp_path: Path) -> None:
    config = published_config(tied)
    raw = published_tensors(config)
    assert ("lm_head.weight" in raw) is not tied
    model = load_pipo(write_checkpoint(tmp_path, config, raw))

    assert model.config.backbone["model_type"] == "qwen3_5_text"
    assert model.config.compressor_type == "mlp"
    assert model.config.pad_token_id == PAD and model.config.eos_token_ids == (EOS,)
    assert (model.lm_head.weight is model.embed_tokens.weight) is tied
    loaded = model.state_dict()
    for key, value in raw.items():  # every non-vision tensor landed where its name says
        if key.startswith("model.visual."):
            continue
        module_key = key.replace("model.language_model.", "backbone.model.").replace(
            "lm_head.", "backbone.lm_head."
        )
        assert torch.equal(loaded[module_key], value), key

    input_ids = torch.randint(0, V, (2, 10), generator=torch.Generator().manual_seed(5))
    input_ids[1, 7] = PAD  # a rejected draft: PAD is an ordinary input token at an odd index
    out = model(input_ids)
    ref = by_hand(raw, config, input_ids)
    tol = {"rtol": 1e-5, "atol": 1e-5}
    for field in ("hidden", "mtp_hidden", "logits1", "logits2"):
        torch.testing.assert_close(getattr(out, field), ref[field], **tol, msg=field)
    conf = model.confidence_logits(out.hidden[:, :-1], out.mtp_hidden)
    torch.testing.assert_close(conf, ref["conf"], **tol)


def test_top_level_tie_flag_is_honoured(tmp_path: Path) -> None:
    """A multimodal config may carry `tie_word_embeddings` only at the top level; then no lm_head is stored."""
    config = published_config(tied=True, tie_in_text_config=False)
    model = load_pipo(write_checkpoint(tmp_path, config, published_tensors(config)))
    assert model.lm_head.weight is model.embed_tokens.weight


@torch.no_grad()
def test_without_compressor_keys_the_compressor_is_neutral(tmp_path: Path) -> None:
    config = published_config(tied=True)
    raw = published_tensors(config, compressor=False)
    assert not any(k.startswith("compressor.") for k in raw)
    model: PipoModel = load_pipo(write_checkpoint(tmp_path, config, raw))
    first, last = model.compressor.mlp[0], model.compressor.mlp[2]
    assert torch.equal(first.weight, torch.eye(2 * H)) and torch.count_nonzero(first.bias) == 0
    assert torch.equal(last.weight, torch.cat([torch.eye(H), torch.eye(H)], dim=1))
    assert torch.count_nonzero(last.bias) == 0
    input_ids = torch.randint(0, V, (1, 8), generator=torch.Generator().manual_seed(1))
    e = F.embedding(input_ids, raw["model.language_model.embed_tokens.weight"])
    torch.testing.assert_close(
        model.compress(input_ids), F.silu(e[:, 0::2]) + F.silu(e[:, 1::2]), rtol=0, atol=1e-6
    )


@torch.no_grad()
def test_qwen3_5_norms_are_the_one_plus_w_form(tmp_path: Path) -> None:
    config = published_config(tied=True)
    raw = published_tensors(config)
    model = load_pipo(write_checkpoint(tmp_path, config, raw))
    x = torch.randn(3, H, generator=torch.Generator().manual_seed(2))
    x2 = torch.randn(3, 2 * H, generator=torch.Generator().manual_seed(3))
    cases = [
        (model.backbone.model.norm, "model.language_model.norm.weight", x),
        (
            model.backbone.model.layers[1].input_layernorm,
            "model.language_model.layers.1.input_layernorm.weight",
            x,
        ),
        (model.mtp.pre_fc_norm_embedding, "mtp.pre_fc_norm_embedding.weight", x),
        (model.mtp.pre_fc_norm_hidden, "mtp.pre_fc_norm_hidden.weight", x),
        (model.mtp.norm, "mtp.norm.weight", x),
        (model.mtp.layers[0].post_attention_layernorm, "mtp.layers.0.post_attention_layernorm.weight", x),
        (model.confidence_head.norm, "confidence_head.norm.weight", x2),
    ]
    for norm, key, inp in cases:
        w = raw[key]
        torch.testing.assert_close(norm(inp), rms_1pw(inp, w), rtol=0, atol=1e-6, msg=key)
        plain = inp * torch.rsqrt(inp.pow(2).mean(-1, keepdim=True) + EPS) * w
        assert (norm(inp) - plain).abs().max() > 0.5, key
    fresh = Qwen3_5RMSNorm(H, eps=EPS)  # weight 0: scale 1 at init
    torch.testing.assert_close(fresh(x), rms_1pw(x, torch.zeros(H)), rtol=0, atol=1e-6)
