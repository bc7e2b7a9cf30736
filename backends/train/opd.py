"""Stage 3: on-policy distillation. The student rolls out with its own decoder (confidence gating on),
the teacher scores the PAD-compacted rollout, and the student minimises the analytic reverse KL on
token1 and token2 while the confidence head learns α = min(1, p_t(y)/p_s(y)).
"""

import random
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel

from pipo_agent.backends.decode import PipoReferenceDecoder, SamplingParams
from pipo_agent.backends.model.checkpoint import save_pipo
from pipo_agent.backends.model.pipo import PipoModel
from pipo_agent.backends.train.augment import rollout_sample
from pipo_agent.backends.train.config import OPDConfig
from pipo_agent.backends.train.loop import train
from pipo_agent.backends.train.losses import opd_losses, pad_compacted_teacher_logits
from pipo_agent.backends.train.sft import freeze_embeddings, head_name, with_head


def train_opd(
    cfg: OPDConfig,
    model: PipoModel,
    teacher: PreTrainedModel,
    prompts: Sequence[list[int]],
    work_dir: str | Path,
    extra_heads: Sequence[nn.Module] = (),
    device: str | torch.device = "cpu",
) -> PipoModel:
    work = Path(work_dir)
    model.to(device)
    teacher.to(device)
    for head in extra_heads:
        head.to(device)
    pad = model.config.pad_token_id
    freeze_embeddings(model)
    teacher.eval().requires_grad_(False)
    decoder = PipoReferenceDecoder(model)

    def step_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        rng = random.Random(cfg.optim.seed * 104_729 + step)
        total = torch.zeros((), device=device)
        stats = {"kl_bb": 0.0, "kl_mtp": 0.0, "conf": 0.0, "commit": 0.0}
        for r in range(cfg.rollouts_per_step):
            prompt = prompts[rng.randrange(len(prompts))]
            params = SamplingParams(
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                top_k=cfg.top_k,
                tau=cfg.rollout_tau,
                max_new_tokens=cfg.max_new_tokens,
                seed=cfg.optim.seed * 1_000_003 + step * 97 + r,
            )
            model.eval()
            result = decoder.generate(prompt, params)
            model.train()
            sample = rollout_sample(prompt, result.slots, pad)
            ids = torch.tensor([sample.input_ids], device=device)
            labels = torch.tensor([sample.labels], device=device)
            with torch.no_grad():
                t_logits = pad_compacted_teacher_logits(teacher, ids, pad)
            parts = opd_losses(
                model,
                model(ids),
                t_logits,
                labels,
                ids,
                pad,
                cfg.kl_mode,
                cfg.topk,
                cfg.lambda_mtp,
                cfg.lambda_conf,
                extra_heads,
            )
            total = total + parts.total / cfg.rollouts_per_step
            stats["kl_bb"] += float(parts.backbone) / cfg.rollouts_per_step
            stats["kl_mtp"] += float(parts.mtp) / cfg.rollouts_per_step
            stats["conf"] += float(parts.conf) / cfg.rollouts_per_step
            for head, value in zip(extra_heads, parts.extra_conf, strict=True):
                key = f"conf_{head_name(head)}"
                stats[key] = stats.get(key, 0.0) + float(value) / cfg.rollouts_per_step
            proposed = max(1, result.stats.drafts_proposed)
            stats["commit"] += result.stats.drafts_committed / proposed / cfg.rollouts_per_step
        return total, stats

    container = nn.ModuleDict({"model": model, "extra_heads": nn.ModuleList(extra_heads)})
    train(container, step_fn, cfg.optim, work, desc="pipo-opd")
    save_pipo(model, work / "final")
    for head in extra_heads:
        save_pipo(with_head(model, head, head_name(head)), work / f"final-{head_name(head)}")
    return model
