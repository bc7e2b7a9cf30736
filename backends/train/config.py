"""Typed, frozen configuration of every training run. One object per run; never environment variables.

A pipeline config can be written as a JSON file and every field overridden from the command line.
"""

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from pipo_agent.tasks import TaskMix


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OptimConfig(_Frozen):
    lr: float = Field(1e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    max_steps: int = Field(1000, ge=1)
    token_budget: int = Field(8192, ge=64, description="tokens (slots) per optimizer step")
    save_every: int = Field(200, ge=1)
    seed: int = 0


class DataConfig(_Frozen):
    train_tasks: int = Field(4500, ge=1, description="tasks drawn from the default family/difficulty mixture")
    opd_tasks: int = Field(400, ge=1)
    heldout_per_family: int = Field(50, ge=1)
    families: tuple[str, ...] = ("arithmetic", "conversion", "strings")
    # Relative weights of `families` in the training mixture; None keeps the default weights
    # (pipo_agent.tasks.DEFAULT_FAMILY_WEIGHTS) of the listed families.
    family_weights: dict[str, float] | None = None
    max_tokens: int = Field(
        2048, ge=64, description="conversations longer than this are left out of training"
    )
    train_seed: int = 1
    heldout_seed: int = 20_261_125
    vocab_size: int = Field(1024, ge=266, description="byte-level BPE needs 256 bytes + 10 special tokens")
    # A saved tokenizer (a folder with tokenizer.json) to use instead of training one. None: the tokenizer of
    # `sft.init_from` / `teacher.init_from` when the run continues a checkpoint, else a new one.
    tokenizer_from: str | None = None

    @field_validator("families")
    @classmethod
    def _known_families(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from pipo_agent.tasks import family_names

        unknown = sorted(set(value) - set(family_names()))
        if not value or unknown:
            raise ValueError(f"unknown or no families {unknown}; valid: {', '.join(family_names())}")
        return value

    @model_validator(mode="after")
    def _weights_of_listed_families(self) -> "DataConfig":
        if self.family_weights is not None:
            extra = sorted(set(self.family_weights) - set(self.families))
            if (
                extra
                or any(w < 0 for w in self.family_weights.values())
                or not any(self.family_weights.values())
            ):
                raise ValueError(
                    f"family_weights must be non-negative, not all zero, and name only the listed families "
                    f"{list(self.families)}; got {self.family_weights}"
                )
        return self

    def task_mix(self) -> "TaskMix":
        from pipo_agent.tasks import TaskMix
        from pipo_agent.tasks.mixture import DEFAULT_FAMILY_WEIGHTS

        weights = self.family_weights or {f: DEFAULT_FAMILY_WEIGHTS.get(f, 1.0) for f in self.families}
        return TaskMix(family_weights={f: weights.get(f, 0.0) for f in self.families})


class TeacherConfig(_Frozen):
    """The AR teacher, a Qwen3-style decoder trained from scratch."""

    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 6
    # Full multi-head attention: PyTorch's CPU SDPA with grouped KV heads (enable_gqa) costs ~2 ms per
    # decode call at this size against ~0.1 ms without, which would dominate every decode step.
    num_kv_heads: int = 6
    head_dim: int = 32
    intermediate_size: int = 576
    max_position_embeddings: int = 4096
    # An AR checkpoint (same tokenizer) to continue training instead of a fresh model; its own config then
    # decides the architecture and the size fields above are not used.
    init_from: str | None = None
    optim: OptimConfig = OptimConfig(lr=3e-3, max_steps=2000, token_budget=2048, save_every=200)


class LoraSettings(_Frozen):
    rank: int = Field(32, ge=1)
    alpha: int = Field(64, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )


class SFTConfig(_Frozen):
    compressor_type: str = "mlp"
    confidence_head: str = "hm"
    max_pad_ratio: float = Field(0.25, ge=0, lt=1, description="per-sample split ratio ~ U[0, max)")
    # Share of samples laid out with every response pair split, (token, PAD)*: what the backbone reads at
    # τ ≥ 1, where no draft is ever committed. 0 keeps the published augmentation only.
    full_pad_share: float = Field(0.0, ge=0, le=1)
    lambda_mtp: float = 1.0
    lambda_conf: float = 1.0
    lora: LoraSettings | None = None  # None: full fine-tune of backbone and MTP layer
    # A PIPO checkpoint to continue from instead of a student freshly made from the teacher (same backbone).
    init_from: str | None = None
    # A PIPO checkpoint whose confidence head (of the pipeline's `ablation_head` kind) starts the ablation
    # head when continuing with `init_from`; None starts it fresh.
    init_ablation_from: str | None = None
    # Loss weight of targets whose token text holds a digit (1: a plain token mean). The tiny models'
    # errors are mostly a wrong digit copied inside long digit-by-digit traces.
    digit_weight: float = Field(1.0, ge=1.0)
    # Freeze the whole PIPO model (its own confidence head too) and train only the ablation head: adds a
    # head variant to a trained checkpoint without changing it.
    frozen_model: bool = False
    optim: OptimConfig = OptimConfig(lr=1e-3, max_steps=800, token_budget=4096, save_every=100)


class OPDConfig(_Frozen):
    rollout_tau: float = Field(0.9, ge=-1, le=1)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    top_k: int = Field(20, ge=0)
    max_new_tokens: int = Field(768, ge=1)
    kl_mode: Literal["full", "topk"] = "full"
    topk: int = Field(32, ge=1)
    lambda_mtp: float = 1.0
    lambda_conf: float = 1.0
    rollouts_per_step: int = Field(4, ge=1)
    optim: OptimConfig = OptimConfig(lr=2e-4, max_steps=40, warmup_ratio=0.0, save_every=10)


class PipelineConfig(_Frozen):
    out_dir: str = "artifacts/default-model"
    data: DataConfig = DataConfig()
    teacher: TeacherConfig = TeacherConfig()
    sft: SFTConfig = SFTConfig()
    opd: OPDConfig = OPDConfig()
    threads: int = Field(2, ge=1)
    stop_after: Literal["teacher", "sft", "opd"] = Field(
        "opd", description="last stage to run; a later rerun without it resumes from there"
    )
    device: str = Field("cpu", description="torch device for every stage: cpu, cuda or cuda:N")
    # Another confidence-head variant trained alongside the main one (on detached inputs, so the model is
    # unchanged) for the head ablation; saved as `pipo-<variant>`. None to skip.
    ablation_head: str | None = "token"

    @model_validator(mode="after")
    def _frozen_model_needs_an_ablation_head(self) -> "PipelineConfig":
        if self.sft.frozen_model and self.ablation_head in (None, self.sft.confidence_head):
            raise ValueError(
                "sft.frozen_model trains only the ablation head, and this run has none: set ablation_head "
                f"to a confidence-head kind other than the model's own ({self.sft.confidence_head!r})"
            )
        return self

    @field_validator("device")
    @classmethod
    def _valid_device(cls, value: str) -> str:
        if value == "cpu" or re.fullmatch(r"cuda(:\d+)?", value):
            return value
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {value!r}")

    @classmethod
    def load(
        cls, path: str | Path | None = None, overrides: dict[str, Any] | None = None
    ) -> "PipelineConfig":
        # Start from the defaults: a nested default such as `opd.optim` (lr 2e-4) differs from its class
        # defaults (lr 1e-3), so setting only `opd.optim.max_steps` must keep the stage's other values.
        data: dict[str, Any] = cls().model_dump(mode="json")
        if path:
            _merge(data, json.loads(Path(path).read_text()))
        for dotted, value in (overrides or {}).items():
            node = data
            *parents, leaf = dotted.split(".")
            for key in parents:
                if not isinstance(node.get(key), dict):
                    node[key] = {}
                node = node[key]
            node[leaf] = value
        return cls.model_validate(data)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    """Deep-merge `update` into `base` in place (dicts merge key by key; anything else replaces)."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
