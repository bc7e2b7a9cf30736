"""Stage 1: the AR teacher, a small Qwen3 decoder trained from scratch on whole conversations."""

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from pipo_agent.backends.model.constants import IGNORE_INDEX
from pipo_agent.backends.train.batching import EpochSchedule, collate
from pipo_agent.backends.train.config import TeacherConfig
from pipo_agent.backends.train.loop import seed_everything, train


def teacher_config(
    cfg: TeacherConfig, vocab_size: int, pad_token_id: int, eos_token_id: int
) -> PretrainedConfig:
    """The Hugging Face config of the AR teacher (a Qwen3 decoder, tied embeddings)."""
    return AutoConfig.for_model(
        "qwen3",
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        rope_theta=10_000.0,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        bos_token_id=None,
    )


def teacher_model(cfg: TeacherConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """A fresh teacher of `cfg`'s size, or the checkpoint `cfg.init_from` (float32) to continue training."""
    seed_everything(cfg.optim.seed)
    if cfg.init_from is not None:
        model = AutoModelForCausalLM.from_pretrained(cfg.init_from, attn_implementation="sdpa").float()
        vocab = model.get_input_embeddings().weight.shape[0]
        if vocab != len(tokenizer):
            raise ValueError(
                f"teacher.init_from={cfg.init_from} has a vocabulary of {vocab} tokens but the run's "
                f"tokenizer has {len(tokenizer)}; continue a teacher only with the tokenizer it was trained with"
            )
        return model
    config = teacher_config(cfg, len(tokenizer), int(tokenizer.pad_token_id), int(tokenizer.eos_token_id))
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").float()


def train_teacher(
    cfg: TeacherConfig,
    tokenizer: PreTrainedTokenizerBase,
    sequences: Sequence[tuple[list[int], list[int]]],
    work_dir: str | Path,
    device: str | torch.device = "cpu",
) -> PreTrainedModel:
    """Next-token CE on assistant responses only; returns the trained model (also saved in work_dir/final)."""
    work = Path(work_dir)
    model = teacher_model(cfg, tokenizer).to(device)
    schedule = EpochSchedule([len(ids) for ids, _ in sequences], cfg.optim.token_budget, cfg.optim.seed)
    pad = int(tokenizer.pad_token_id)

    def step_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        ids, labels = collate([sequences[i] for i in schedule.batch(step)], pad)
        ids, labels = ids.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        logits = model(input_ids=ids).logits[:, :-1]
        target = labels[:, 1:]
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX)
        return loss, {"loss": float(loss.detach()), "n_tokens": float((target != IGNORE_INDEX).sum())}

    train(model, step_fn, cfg.optim, work, desc="teacher")
    model.save_pretrained(work / "final")
    return model
