"""LoRA on the backbone and the MTP layer (PIPO_SPEC Part B §2.7): what stays trainable, and merging the
adapters back into plain layers without changing the model's outputs."""

from collections.abc import Callable
from pathlib import Path

import torch
from peft.tuners.lora import LoraLayer

from pipo_agent.backends.model.checkpoint import load_pipo, save_pipo
from pipo_agent.backends.model.pipo import PipoModel
from pipo_agent.backends.train.config import LoraSettings
from pipo_agent.backends.train.lora import add_lora, merge_lora
from pipo_agent.backends.train.losses import sft_losses

SETTINGS = LoraSettings(rank=4, alpha=8)
FULLY_TRAINED = ("compressor.", "confidence_head.", "mtp.fc.", "mtp.pre_fc_norm_", "mtp.norm.")
# The MTP decoder layer's own norms are trained fully too (PIPO_SPEC Part B §2.7).
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def test_only_adapters_compressor_mtp_fc_norms_and_conf_head_are_trainable(
    pipo: Callable[..., PipoModel],
) -> None:
    model = add_lora(pipo(), SETTINGS)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    mtp_norms = {n for n, _ in model.named_parameters() if n.startswith("mtp.layers.0.") and "norm" in n}
    assert "mtp.layers.0.input_layernorm.weight" in mtp_norms
    assert mtp_norms <= trainable
    assert all("lora_" in n or n.startswith(FULLY_TRAINED) or n in mtp_norms for n in trainable)
    assert all(n in trainable for n, _ in model.named_parameters() if n.startswith(FULLY_TRAINED))
    for prefix in ("backbone.model.layers.", "mtp.layers.0."):  # every target linear of both got adapters
        adapted = {n.split(".lora_")[0] for n in trainable if n.startswith(prefix) and "lora_" in n}
        assert {a.rsplit(".", 1)[1] for a in adapted} == set(TARGETS)
        assert all(f"{a}.base_layer.weight" in frozen for a in adapted)
    assert len([n for n in trainable if "lora_" in n and n.startswith("mtp.")]) == 2 * len(TARGETS)
    for name in (
        "backbone.model.embed_tokens.weight",
        "backbone.lm_head.weight",
        "backbone.model.norm.weight",
    ):
        assert name in frozen
    assert "backbone.model.layers.0.input_layernorm.weight" in frozen


def _train_a_little(model: PipoModel, ids: torch.Tensor) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    labels = ids.clone()
    labels[:, :4] = -100
    for _ in range(3):
        opt.zero_grad()
        sft_losses(model, model(ids), labels).total.backward()
        opt.step()


def test_merge_removes_every_adapter_and_keeps_the_outputs(
    pipo: Callable[..., PipoModel], random_ids: Callable[..., torch.Tensor], tmp_path: Path
) -> None:
    model = add_lora(pipo(), SETTINGS)
    ids = random_ids(2, 16)
    base = pipo()(ids)
    _train_a_little(model, ids)
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert all(p.abs().max() > 0 for p in lora_b)  # the adapters moved away from their zero init
    model.eval()
    with torch.no_grad():
        adapted = model(ids)
        assert not torch.allclose(adapted.logits1, base.logits1, atol=1e-3)
        merged_model = merge_lora(model)
        merged = merged_model(ids)
    assert not any(isinstance(m, LoraLayer) for m in merged_model.modules())
    keys = set(merged_model.state_dict())
    assert keys == set(pipo().state_dict())  # the plain layout: checkpoints and decoders see no LoRA
    for name in ("logits1", "logits2", "hidden", "mtp_hidden"):
        torch.testing.assert_close(getattr(merged, name), getattr(adapted, name), rtol=1e-5, atol=1e-5)

    save_pipo(merged_model, tmp_path / "ckpt")
    loaded = load_pipo(tmp_path / "ckpt")
    with torch.no_grad():
        again = loaded(ids)
    for name in ("logits1", "logits2"):
        torch.testing.assert_close(getattr(again, name), getattr(merged, name), rtol=0, atol=0)
