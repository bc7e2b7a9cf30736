"""`save_pipo` / `load_pipo`: exact round trips, tied embeddings, bf16, and bad checkpoints (PIPO_SPEC A2, B §2.8)."""

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM

from pipo_agent.backends.model import CheckpointError, ModelConfigError, PipoModel, load_pipo, save_pipo

Factory = Callable[..., PipoModel]


def assert_same_tensors(a: PipoModel, b: PipoModel) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key, value in sa.items():
        assert value.dtype == sb[key].dtype, key
        assert torch.equal(value, sb[key]), key


@pytest.mark.parametrize(("compressor", "head"), [("mlp", "hm"), ("linear", "token")])
def test_round_trip_is_exact(
    backbone_name: str, compressor: str, head: str, pipo: Factory, tmp_path: Path
) -> None:
    model = pipo(backbone_name, compressor_type=compressor, confidence_head=head, eos_token_ids=(2, 3))
    save_pipo(model, tmp_path)
    loaded = load_pipo(tmp_path)
    assert loaded.config == model.config
    assert not loaded.training
    assert_same_tensors(model, loaded)


def test_round_trip_of_a_student_built_from_a_teacher(tiny: Callable[..., dict], tmp_path: Path) -> None:
    fields = dict(tiny("qwen3_5_text"))
    teacher = AutoModelForCausalLM.from_config(AutoConfig.for_model(fields.pop("model_type"), **fields))
    model = PipoModel.from_teacher(teacher, pad_token_id=1)
    save_pipo(model, tmp_path)
    loaded = load_pipo(tmp_path)
    assert loaded.config == model.config  # a full HF config dict (id2label with int keys and all)
    assert_same_tensors(model, loaded)


def test_file_layout_uses_published_key_names(pipo: Factory, tmp_path: Path) -> None:
    save_pipo(pipo("llama"), tmp_path)
    keys = load_file(str(tmp_path / "model.safetensors")).keys()
    prefixes = {k.split(".")[0] for k in keys}
    assert prefixes == {"model", "lm_head", "compressor", "mtp", "confidence_head"}
    assert all(k.startswith("model.language_model.") for k in keys if k.startswith("model."))
    assert {
        "lm_head.weight",
        "mtp.fc.weight",
        "compressor.mlp.0.weight",
        "confidence_head.fc1.weight",
    } <= keys
    assert json.loads((tmp_path / "config.json").read_text())["compressor_type"] == "mlp"


def test_tied_embeddings_stay_tied(pipo: Factory, tmp_path: Path) -> None:
    model = pipo("qwen3")
    assert model.lm_head.weight is model.embed_tokens.weight
    save_pipo(model, tmp_path)
    assert "lm_head.weight" not in load_file(str(tmp_path / "model.safetensors"))
    loaded = load_pipo(tmp_path)
    assert loaded.lm_head.weight is loaded.embed_tokens.weight
    assert loaded.lm_head.weight.data_ptr() == loaded.embed_tokens.weight.data_ptr()
    assert torch.equal(loaded.lm_head.weight, model.embed_tokens.weight)


def test_untied_head_stays_separate(pipo: Factory, tmp_path: Path) -> None:
    model = pipo("llama")
    save_pipo(model, tmp_path)
    loaded = load_pipo(tmp_path)
    assert loaded.lm_head.weight.data_ptr() != loaded.embed_tokens.weight.data_ptr()
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)


def test_bf16_save_loads_the_bf16_values(pipo: Factory, tmp_path: Path) -> None:
    model = pipo("qwen3_5_text", confidence_head="token")
    save_pipo(model, tmp_path, dtype=torch.bfloat16)
    assert {t.dtype for t in load_file(str(tmp_path / "model.safetensors")).values()} == {torch.bfloat16}
    as_fp32, as_bf16 = load_pipo(tmp_path), load_pipo(tmp_path, dtype=torch.bfloat16)
    original = model.state_dict()
    for key, value in as_fp32.state_dict().items():
        assert value.dtype == torch.float32, key
        assert torch.equal(value, original[key].to(torch.bfloat16).float()), key
    for key, value in as_bf16.state_dict().items():
        assert torch.equal(value, original[key].to(torch.bfloat16)), key
    assert as_bf16.lm_head.weight is as_bf16.embed_tokens.weight


# ---- bad checkpoints ----


@pytest.fixture
def saved(pipo: Factory, tmp_path: Path) -> Path:
    save_pipo(pipo("qwen3"), tmp_path)
    return tmp_path


def _rewrite(directory: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    path = directory / "model.safetensors"
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path))


@pytest.mark.parametrize(
    "key",
    ["mtp.fc.weight", "model.language_model.layers.1.self_attn.k_norm.weight", "confidence_head.norm.weight"],
)
def test_missing_key(saved: Path, key: str) -> None:
    _rewrite(saved, lambda t: t.pop(key))
    with pytest.raises(CheckpointError, match=rf"missing keys: {re.escape(key)}"):
        load_pipo(saved)


def test_partial_compressor_is_missing_keys_not_neutral(saved: Path) -> None:
    _rewrite(saved, lambda t: t.pop("compressor.mlp.2.bias"))
    with pytest.raises(CheckpointError, match=r"missing keys: compressor\.mlp\.2\.bias"):
        load_pipo(saved)


@pytest.mark.parametrize(
    "key", ["mtp.layers.1.mlp.up_proj.weight", "model.language_model.extra.weight", "junk"]
)
def test_unexpected_key(saved: Path, key: str) -> None:
    _rewrite(saved, lambda t: t.update({key: torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=rf"unexpected keys: {re.escape(key)}"):
        load_pipo(saved)


@pytest.mark.parametrize("key", ["mtp.fc.weight", "model.language_model.layers.0.mlp.up_proj.weight"])
def test_wrong_shape(saved: Path, key: str) -> None:
    def edit(t: dict[str, torch.Tensor]) -> None:
        t[key] = t[key][:, :-1].contiguous()

    _rewrite(saved, edit)
    with pytest.raises(CheckpointError, match=rf"wrong shapes: {re.escape(key)} \(checkpoint"):
        load_pipo(saved)


def test_all_problems_are_reported_together(saved: Path) -> None:
    def edit(t: dict[str, torch.Tensor]) -> None:
        t.pop("mtp.norm.weight")
        t["mtp.bogus"] = torch.zeros(1)
        t["mtp.fc.weight"] = torch.zeros(3, 3)

    _rewrite(saved, edit)
    with pytest.raises(CheckpointError) as info:
        load_pipo(saved)
    message = str(info.value)
    assert "mtp.norm.weight" in message and "mtp.bogus" in message and "mtp.fc.weight" in message


@pytest.mark.parametrize("published", [False, True])
def test_unknown_compressor_type_in_config(saved: Path, published: bool) -> None:
    config = json.loads((saved / "config.json").read_text())
    if published:
        config = {"model_type": "qwen3_5", "text_config": config["backbone"], "pad_token_id": 1}
    config["compressor_type"] = "gated"
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelConfigError, match=r"'gated'.*valid choices: linear, mlp"):
        load_pipo(saved)


def test_unknown_field_in_our_config_is_an_error(saved: Path) -> None:
    config = json.loads((saved / "config.json").read_text())
    config["compresor_type"] = "mlp"
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelConfigError, match="compresor_type"):
        load_pipo(saved)


def test_missing_config_json(saved: Path) -> None:
    (saved / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json"):
        load_pipo(saved)


def test_invalid_config_json(saved: Path) -> None:
    (saved / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_pipo(saved)


def test_missing_weights_file(saved: Path) -> None:
    (saved / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_pipo(saved)
