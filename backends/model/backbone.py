"""Hugging Face backbones: build one from a config dict, run its base model on latents, and make the
MTP's decoder layer of the backbone's own class.

The only transformers internals used are `model.embed_tokens`, `model.layers`, `model.norm`,
`model.rotary_emb` and `lm_head`, which Llama, Qwen2, Qwen3 and Qwen3.5 share.
"""

import copy
import inspect
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

# transformers renamed the cache argument ("past_key_values" -> "cache") during 5.x; SGLang pins an
# older 5.x, so look the name up once instead of assuming either.
_BASE_FORWARD_PARAMS: dict[type, str] = {}


def backbone_config(config_dict: dict[str, Any]) -> PretrainedConfig:
    fields = dict(config_dict)
    model_type = fields.pop("model_type")
    for key in ("transformers_version", "architectures", "_name_or_path"):
        fields.pop(key, None)
    config = AutoConfig.for_model(model_type, **fields)
    config._attn_implementation = "sdpa"
    return config


def build_backbone(config_dict: dict[str, Any]) -> PreTrainedModel:
    model = AutoModelForCausalLM.from_config(backbone_config(config_dict), attn_implementation="sdpa")
    return model.float()


def cache_kwarg(base_model: nn.Module) -> str:
    cls = type(base_model)
    if cls not in _BASE_FORWARD_PARAMS:
        params = inspect.signature(cls.forward).parameters
        _BASE_FORWARD_PARAMS[cls] = "cache" if "cache" in params else "past_key_values"
    return _BASE_FORWARD_PARAMS[cls]


def output_cache(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)


def full_attention_layer_index(config: PretrainedConfig) -> int:
    layer_types = getattr(config, "layer_types", None)
    if not layer_types:
        return 0
    for i, kind in enumerate(layer_types):
        if kind == "full_attention":
            return i
    raise ValueError("backbone has no full-attention layer to copy the MTP layer's class from")


def mtp_layer_config(config: PretrainedConfig) -> PretrainedConfig:
    """A copy of the backbone config describing one full-attention layer (the MTP's own)."""
    mtp_config = copy.deepcopy(config)
    mtp_config.num_hidden_layers = 1
    if getattr(mtp_config, "layer_types", None):
        mtp_config.layer_types = ["full_attention"]
    return mtp_config


def make_mtp_layer(backbone: PreTrainedModel) -> tuple[nn.Module, PretrainedConfig]:
    layer_cls = type(backbone.model.layers[full_attention_layer_index(backbone.config)])
    mtp_config = mtp_layer_config(backbone.config)
    return layer_cls(mtp_config, 0), mtp_config


def norm_class(backbone: PreTrainedModel) -> type[nn.Module]:
    return type(backbone.model.norm)


def rms_eps(config: PretrainedConfig) -> float:
    return float(getattr(config, "rms_norm_eps", 1e-6))


def causal_mask(q_len: int, past_len: int, device: torch.device) -> torch.Tensor | None:
    """Boolean `[1, 1, q, past + q]` mask for q new positions after `past` cached ones (None when q == 1)."""
    if q_len == 1:
        return None
    k_pos = torch.arange(past_len + q_len, device=device)
    q_pos = torch.arange(q_len, device=device) + past_len
    return (k_pos[None, :] <= q_pos[:, None])[None, None]  # [1, 1, q, past+q]
