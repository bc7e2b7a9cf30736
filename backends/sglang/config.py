"""`model_type: "pipo"` for `transformers.AutoConfig`, as SGLang reads it.

SGLang sizes its KV pool and its scheduler from the usual top-level fields (`num_hidden_layers`,
`num_key_value_heads`, `head_dim`, `max_position_embeddings`, ...). The PIPO config keeps the backbone's under
`backbone`; this config lifts them to the top, with one more layer than the backbone has: the MTP layer keeps
its KV in the pool's last layer, at the same slot as the backbone's layers (one slot per pair).

For a Qwen3.5 backbone (hybrid linear + full attention), `text_config` is SGLang's own Qwen3.5 text config
with one more full-attention layer, so SGLang builds its linear-attention state pool and its hybrid attention
backend for it (`hybrid.py`).
"""

from typing import Any

from transformers import PretrainedConfig

from pipo_agent.backends.model.config import PipoConfig
from pipo_agent.backends.sglang import ARCHITECTURE

HYBRID_BACKBONES = ("qwen3_5_text",)
HF_FULL = "full_attention"
HF_LINEAR = "linear_attention"


def layer_types(backbone: dict[str, Any]) -> list[str]:
    """A hybrid backbone's layer types (Hugging Face names), from `layer_types` or `full_attention_interval`."""
    types = backbone.get("layer_types")
    if types:
        return [str(kind) for kind in types]
    interval = int(backbone.get("full_attention_interval", 4))
    return [
        HF_FULL if (i + 1) % interval == 0 else HF_LINEAR for i in range(int(backbone["num_hidden_layers"]))
    ]


# Backbone fields SGLang reads from the top level of a config.
_LIFTED = (
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_parameters",
    "hidden_act",
    "attention_bias",
    "tie_word_embeddings",
)


class PipoSGLangConfig(PretrainedConfig):
    model_type = "pipo"

    def __init__(self, **data: Any) -> None:
        pipo_fields = {k: data.pop(k) for k in list(data) if k in PipoConfig.model_fields}
        data.pop("pipo_format", None)
        self.pipo = PipoConfig(**pipo_fields).model_dump(mode="json") if pipo_fields else {}
        backbone = dict(self.pipo.get("backbone", {}))
        for key in _LIFTED:
            if key in backbone:
                data.setdefault(key, backbone[key])
        if backbone:
            heads = int(backbone["num_attention_heads"])
            data.setdefault("head_dim", backbone.get("head_dim") or int(backbone["hidden_size"]) // heads)
            data["backbone_num_hidden_layers"] = int(backbone["num_hidden_layers"])
            data["num_hidden_layers"] = int(backbone["num_hidden_layers"]) + 1  # + the MTP layer
            data.setdefault("architectures", [ARCHITECTURE])
            data.setdefault("pad_token_id", self.pipo["pad_token_id"])
            data.setdefault("eos_token_id", list(self.pipo["eos_token_ids"]) or None)
            data.setdefault("torch_dtype", backbone.get("dtype") or backbone.get("torch_dtype") or "float32")
            if backbone.get("model_type") in HYBRID_BACKBONES:
                # SGLang's own Qwen3.5 layers run the backbone; its pools are sized from this text config
                # (the backbone's layers plus the MTP layer as one more full-attention layer).
                from pipo_agent.backends.sglang.hybrid_config import pool_config

                data["text_config"] = pool_config(backbone)
                data["language_model_only"] = True
        super().__init__(**data)

    def pipo_config(self) -> PipoConfig:
        return PipoConfig(**self.pipo)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update(self.pipo)
        out.pop("pipo", None)
        out.pop("text_config", None)
        return out
