"""SGLang's Qwen3.5 text config for a PIPO model's hybrid backbone (imports SGLang's configs only, not its models).

`pool_config` is what SGLang sizes its pools from: the backbone's layers and, last, the MTP layer as one more
full-attention layer. `text_config` describes the layers SGLang's Qwen3.5 modules are built with.
"""

from collections.abc import Sequence
from typing import Any

from sglang.srt.configs.qwen3_5 import Qwen3_5TextConfig
from sglang.srt.configs.qwen3_next import HybridLayerType

from pipo_agent.backends.sglang.config import HF_FULL, HF_LINEAR, layer_types

_SGLANG_TYPE = {
    HF_FULL: HybridLayerType.full_attention.value,
    HF_LINEAR: HybridLayerType.linear_attention.value,
}


class PipoQwen35TextConfig(Qwen3_5TextConfig):
    """SGLang's Qwen3.5 text config with the layer types given explicitly (not only by an interval)."""

    def __init__(self, pipo_layer_types: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipo_layer_types = list(pipo_layer_types)
        self.num_hidden_layers = len(self.pipo_layer_types)
        # SGLang refreshes the shared rotary cos/sin at the first full-attention layer, found by this interval.
        self.full_attention_interval = (
            self.pipo_layer_types.index(HF_FULL) + 1 if HF_FULL in self.pipo_layer_types else 1
        )

    @property
    def layers_block_type(self) -> list[str]:
        return [_SGLANG_TYPE[kind] for kind in self.pipo_layer_types]


def text_config(backbone: dict[str, Any], types: Sequence[str]) -> PipoQwen35TextConfig:
    """An SGLang Qwen3.5 text config of the backbone's fields (Hugging Face's defaults filled in, as the
    `PipoModel` is built with them) with the given layer types."""
    from transformers import Qwen3_5TextConfig as HFQwen3_5TextConfig

    full = HFQwen3_5TextConfig(**backbone).to_dict()
    fields = {k: v for k, v in full.items() if k not in ("layer_types", "num_hidden_layers", "model_type")}
    rope = fields.get("rope_parameters") or {}
    fields.setdefault("partial_rotary_factor", rope.get("partial_rotary_factor", 0.25))
    if "rope_theta" in rope:
        fields.setdefault("rope_theta", rope["rope_theta"])
    return PipoQwen35TextConfig(pipo_layer_types=types, **fields)


def pool_config(backbone: dict[str, Any]) -> PipoQwen35TextConfig:
    """What SGLang sizes its pools from: the backbone's layers and the MTP layer as one more full-attention layer."""
    return text_config(backbone, [*layer_types(backbone), HF_FULL])
