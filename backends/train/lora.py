"""LoRA (peft) on the backbone and the MTP decoder layer, and merging it back before saving/serving."""

from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from torch import nn

from pipo_agent.backends.model.pipo import PipoModel
from pipo_agent.backends.train.config import LoraSettings


def add_lora(model: PipoModel, settings: LoraSettings) -> PipoModel:
    """Inject LoRA adapters into every matching linear of the backbone and the MTP layer.

    Only adapters, the compressor, the MTP fc/norms and the confidence head stay trainable; embeddings,
    LM head and the backbone's own weights are frozen.
    """
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
    )
    for module in (model.backbone.model, model.mtp.layers):
        inject_adapter_in_model(config, module)
    for name, param in model.named_parameters():
        param.requires_grad = (
            "lora_" in name
            or name.startswith(("compressor.", "confidence_head."))
            or (name.startswith("mtp.") and not name.startswith("mtp.layers."))
            # The MTP layer's own norms are trained fully (PIPO_SPEC Part B §2.7, SFT column).
            or (name.startswith("mtp.layers.") and "norm" in name)
        )
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA adapter into its base weight and put the plain layer back in place."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
    for param in model.parameters():
        param.requires_grad = True
    return model
