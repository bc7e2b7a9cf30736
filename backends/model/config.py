"""The PIPO model configuration: one frozen object, saved into `config.json` beside the weights."""

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from pipo_agent.backends.model.compressor import COMPRESSORS
from pipo_agent.backends.model.confidence import CONFIDENCE_HEADS
from pipo_agent.backends.model.errors import ModelConfigError

SUPPORTED_BACKBONES = ("llama", "qwen2", "qwen3", "qwen3_5_text")

# `config.json` marker of checkpoints written by this project (published checkpoints have none).
CONFIG_FORMAT = "pipo-agent/1"


class PipoConfig(BaseModel):
    """What a PIPO model is made of. `backbone` is the Hugging Face config dict of the backbone."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backbone: dict[str, Any]
    compressor_type: str = "mlp"
    confidence_head: str = "hm"
    pad_token_id: int
    eos_token_ids: tuple[int, ...] = ()

    def __init__(self, **data: Any) -> None:
        # pydantic wraps errors raised in validators into its own ValidationError; map them once here so
        # callers see the package's ModelConfigError (whose message keeps the valid choices).
        try:
            super().__init__(**data)
        except ValidationError as exc:
            details = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors()
            )
            raise ModelConfigError(f"invalid PIPO config: {details}") from exc

    @field_validator("compressor_type")
    @classmethod
    def _known_compressor(cls, value: str) -> str:
        if value not in COMPRESSORS:
            raise ModelConfigError(
                f"unknown compressor type {value!r}; valid choices: {', '.join(COMPRESSORS.names())}"
            )
        return value

    @field_validator("confidence_head")
    @classmethod
    def _known_head(cls, value: str) -> str:
        if value not in CONFIDENCE_HEADS:
            raise ModelConfigError(
                f"unknown confidence head {value!r}; valid choices: {', '.join(CONFIDENCE_HEADS.names())}"
            )
        return value

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: dict[str, Any]) -> dict[str, Any]:
        model_type = value.get("model_type")
        if model_type not in SUPPORTED_BACKBONES:
            raise ModelConfigError(
                f"unsupported backbone model_type {model_type!r}; valid choices: {', '.join(SUPPORTED_BACKBONES)}"
            )
        # Hold the JSON form (e.g. `id2label` int keys become strings) so a save/load round trip is exact.
        return dict(json.loads(json.dumps(value)))

    @property
    def hidden_size(self) -> int:
        return int(self.backbone["hidden_size"])

    def to_json_dict(self) -> dict[str, Any]:
        return {"pipo_format": CONFIG_FORMAT, "model_type": "pipo", **self.model_dump(mode="json")}

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> "PipoConfig":
        """Read our own `config.json`, or a published PIPO checkpoint's (a backbone config plus PIPO fields)."""
        if data.get("pipo_format") == CONFIG_FORMAT:
            fields = {k: v for k, v in data.items() if k not in ("pipo_format", "model_type")}
            return cls(**fields)
        return cls._from_published(data)

    @classmethod
    def _from_published(cls, data: dict[str, Any]) -> "PipoConfig":
        text = dict(data.get("text_config") or data)
        if "text_config" in data and "tie_word_embeddings" in data:
            # A multimodal checkpoint's own class ties (or not) by the top-level flag.
            text["tie_word_embeddings"] = bool(data["tie_word_embeddings"])
        model_type = text.get("model_type", data.get("model_type"))
        if model_type in ("qwen3_5", "qwen3_5_text"):
            text["model_type"] = "qwen3_5_text"
        pad = data.get("pad_token_id", text.get("pad_token_id"))
        if pad is None:
            raise ModelConfigError(
                "checkpoint config has no pad_token_id; PIPO needs one for rejected drafts"
            )
        eos = data.get("eos_token_id", text.get("eos_token_id"))
        eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (int(eos),))
        for key in ("compressor_type", "pad_token_id", "eos_token_id", "architectures"):
            text.pop(key, None)
        return cls(
            backbone=text,
            compressor_type=str(data.get("compressor_type", text.get("compressor_type", "mlp"))),
            confidence_head="hm",
            pad_token_id=int(pad),
            eos_token_ids=eos_ids,
        )
