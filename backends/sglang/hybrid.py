"""PIPO over SGLang's own Qwen3.5 layers: the hybrid backbone (Gated-DeltaNet linear attention + gated full
attention) and the MTP layer run as SGLang modules, over SGLang's KV pool and its linear-attention state pool.

The compressor, the embedding, the LM head, the MTP's `fc` and pre-norms and the confidence head stay the
`PipoModel`'s own modules; the backbone's decoder stack and final norm, and the MTP's decoder layer and final
norm, are SGLang's `Qwen3_5ForCausalLM` body (the one SGLang serves Qwen3.5 with), loaded with the same weights.

Everything SGLang sees is in *pair* space: one row per pair latent, pair `j` at RoPE position `j`, its K/V in
the pool row of the request's `j`-th slot (as for the dense backbones), and the linear-attention state of a
request advanced by one latent per pair. Each PIPO step is one EXTEND forward over the new pairs of the
requests that run (a decode step is an extend of one pair): SGLang's own `ForwardBatch` is built from the
scheduler's batch with the pair counts, so its attention metadata, its GDN metadata (initial states where a
request already has pairs, fresh ones where it has none) and its forward context are SGLang's own.

The MTP layer is a full-attention layer of the backbone's class with layer id `L` (the backbone has layers
`0..L-1`): the pool config adds it as one more full-attention layer, so its K/V lives in the same pool, one row
per pair like the backbone's.
"""

import copy
from collections.abc import Sequence
from typing import Any

import torch
from sglang.srt.configs.qwen3_next import HybridLayerType
from sglang.srt.configs.update_config import adjust_tp_num_heads_if_necessary
from sglang.srt.managers.schedule_batch import ScheduleBatch
from sglang.srt.model_executor.forward_batch_info import ForwardBatch, ForwardMode
from sglang.srt.model_executor.forward_context import ForwardContext, forward_context
from sglang.srt.models import qwen3_5 as sglang_qwen3_5
from sglang.srt.runtime_context import get_parallel
from sglang.srt.utils import is_cpu
from torch import nn

from pipo_agent.backends.engine.attention import build_metadata
from pipo_agent.backends.engine.model_runner import PipoRunner
from pipo_agent.backends.engine.scheduler import ScheduledBatch
from pipo_agent.backends.model.pipo import PipoModel
from pipo_agent.backends.sglang import ATTENTION_BACKEND
from pipo_agent.backends.sglang.attention import META_FIELD, PairSlotAttention
from pipo_agent.backends.sglang.config import HF_FULL, layer_types
from pipo_agent.backends.sglang.hybrid_config import text_config


def _offset_attention_layer(offset: int) -> type[nn.Module]:
    """SGLang's full-attention decoder layer, built with its layer id shifted by `offset`."""

    class OffsetAttentionDecoderLayer(sglang_qwen3_5.Qwen3_5AttentionDecoderLayer):
        def __init__(self, config: Any, layer_id: int, **kwargs: Any) -> None:
            super().__init__(config, layer_id + offset, **kwargs)

    return OffsetAttentionDecoderLayer


class SGLangQwen35Body(sglang_qwen3_5.Qwen3_5ForCausalLM):
    """SGLang's Qwen3.5 body: decoder layers and final norm (its `forward` takes `input_embeds`)."""


def module_config(backbone: dict[str, Any], types: list[str]) -> Any:
    """The text config SGLang's Qwen3.5 modules are built with; on the CPU with the head counts its CPU path
    reads (`linear_num_*_heads_cpu`), as SGLang sets them on a served model's config."""
    config = text_config(backbone, types)
    if is_cpu():
        adjust_tp_num_heads_if_necessary(config, get_parallel().attn_tp_size, True)
    return config


def mtp_body(backbone: dict[str, Any]) -> nn.Module:
    """The MTP's decoder layer (layer id L) and final norm, as a one-layer SGLang Qwen3.5 body."""
    offset = len(layer_types(backbone))
    cls = type(
        "SGLangQwen35MTPBody",
        (SGLangQwen35Body,),
        {"decoder_layer_types": {HybridLayerType.full_attention.value: _offset_attention_layer(offset)}},
    )
    config = module_config(backbone, [HF_FULL])
    config.full_attention_interval = offset + 1  # its one layer (id L) refreshes the rotary cos/sin itself
    return cls(config, None, prefix="mtp")


class HybridLayers(nn.Module):
    """SGLang's Qwen3.5 backbone body and MTP body, with the `PipoModel`'s weights."""

    def __init__(self, backbone: dict[str, Any]) -> None:
        super().__init__()
        self.body = SGLangQwen35Body(module_config(backbone, layer_types(backbone)), None, prefix="model")
        self.mtp = mtp_body(backbone)
        for module in (self.body, self.mtp):
            module.embed_tokens = None  # both run on given embeddings; the PipoModel owns the table

    def load_from(self, pipo: PipoModel) -> None:
        """Copies the backbone's and the MTP layer's weights in, through SGLang's own weight loaders, then frees
        the `PipoModel`'s copies of them."""
        base = pipo.backbone.model
        state = {
            name: p.detach() for name, p in base.named_parameters() if not name.startswith("embed_tokens.")
        }
        self._load(self.body, state.items())
        mtp = {f"layers.0.{name}": p.detach() for name, p in pipo.mtp.layers[0].named_parameters()}
        mtp |= {f"norm.{name}": p.detach() for name, p in pipo.mtp.norm.named_parameters()}
        self._load(self.mtp, mtp.items())
        base.layers = nn.ModuleList()
        pipo.mtp.layers = nn.ModuleList()

    @staticmethod
    def _load(body: nn.Module, weights: Any) -> None:
        wanted = {name for name, _ in body.named_parameters()}
        loaded = body.load_weights(iter(list(weights)))
        missing = sorted(wanted - set(loaded))
        if missing:
            raise ValueError(f"SGLang's Qwen3.5 layers got no weights for: {', '.join(missing[:8])}")


class HybridPipoRunner(PipoRunner):
    """`PipoRunner` whose backbone and MTP layer are SGLang's Qwen3.5 modules over a pair-space `ForwardBatch`.

    The worker calls `bind` with the scheduler's batch before each `execute`; every sequence of a step runs
    the MTP layer (its K/V is written for all of them; only phase-2 requests draft)."""

    def __init__(self, model: PipoModel, layers: HybridLayers, model_runner: Any) -> None:
        full = getattr(model_runner.attn_backend, "full_attn_backend", None)
        if not isinstance(full, PairSlotAttention):
            raise RuntimeError(f"the PIPO worker needs --attention-backend {ATTENTION_BACKEND}")
        self.layers = layers
        self.model_runner = model_runner
        self.needs_torch_metadata = full.needs_torch_metadata
        self.schedule_batch: ScheduleBatch | None = None
        self.batch_rows: list[int] = []
        super().__init__(model, None, None, block_size=1)  # type: ignore[arg-type]

    def bind(self, batch: ScheduleBatch, rows: list[int]) -> None:
        """The scheduler's batch of this step and the rows of it that run, in the order of the work."""
        self.schedule_batch, self.batch_rows = batch, rows

    # ---- hooks of PipoRunner ----

    def _begin(self, batch: ScheduledBatch) -> tuple[Any, torch.Tensor]:
        self.profiler.start(decode=not batch.is_prefill)
        fb = self._forward_batch(batch)
        self.profiler.mark("metadata")
        return fb, fb.positions

    def _backbone(self, latents: torch.Tensor, positions: torch.Tensor, meta: Any) -> torch.Tensor:
        return self._run(self.layers.body, latents, positions, meta)

    def _mtp(
        self, token_embeds: torch.Tensor, hidden: torch.Tensor, positions: torch.Tensor, meta: Any
    ) -> torch.Tensor:
        mtp = self.model.mtp
        fused = torch.cat([mtp.pre_fc_norm_embedding(token_embeds), mtp.pre_fc_norm_hidden(hidden)], dim=-1)
        return self._run(self.layers.mtp, mtp.fc(fused), positions, meta)

    def _mtp_sequences(self, batch: ScheduledBatch, requests: Sequence[Any]) -> list[int]:
        if not any(req.phase2 for req in requests):
            return []
        return list(range(batch.num_seqs))  # the forward batch covers all of them

    # ---- SGLang ----

    def _run(
        self, body: nn.Module, embeds: torch.Tensor, positions: torch.Tensor, fb: ForwardBatch
    ) -> torch.Tensor:
        runner = self.model_runner
        with forward_context(ForwardContext(attn_backend=runner.attn_backend), forward_batch=fb):
            out = body(None, positions, fb, input_embeds=embeds)
        return out[0] if isinstance(out, tuple) else out

    def _forward_batch(self, batch: ScheduledBatch) -> ForwardBatch:
        """SGLang's forward batch for the step, in pair space: an EXTEND of each running request's new pairs."""
        sb = self.schedule_batch
        assert sb is not None, "bind() the scheduler's batch first"
        rows = self.batch_rows
        device = sb.seq_lens.device
        pairs = copy.copy(sb)
        new = list(batch.num_new_pairs)
        total = list(batch.context_lens)
        pairs.reqs = [sb.reqs[i] for i in rows]
        pairs.forward_mode = ForwardMode.EXTEND
        pairs.input_ids = torch.zeros(sum(new), dtype=torch.int64, device=device)
        pairs.req_pool_indices = sb.req_pool_indices[rows]
        pairs.seq_lens = torch.tensor(total, dtype=sb.seq_lens.dtype, device=device)
        pairs.seq_lens_cpu = torch.tensor(total, dtype=torch.int64)
        pairs.orig_seq_lens = pairs.seq_lens.clone()
        pairs.seq_lens_sum = sum(total)
        pairs.out_cache_loc = torch.tensor(batch.slot_mapping, dtype=torch.int64, device=device)
        pairs.prefix_lens = [t - n for t, n in zip(total, new, strict=True)]
        pairs.extend_lens = new
        pairs.extend_num_tokens = sum(new)
        pairs.extend_logprob_start_lens = list(new)
        pairs.return_logprob = False
        pairs.top_logprobs_nums = None
        pairs.token_ids_logprobs = None
        pairs.multimodal_inputs = [None] * len(rows)
        pairs.decoding_reqs = None
        pairs.input_embeds = None
        pairs.spec_info = None
        for field in (
            "mamba_track_indices",
            "mamba_track_mask",
            "mamba_track_seqlens",
            "mamba_prefill_track_mask_cpu",
            "mamba_track_seqlens_cpu",
        ):
            setattr(pairs, field, None)  # no radix cache: no states to snapshot
        runner = self.model_runner
        fb = ForwardBatch.init_new(pairs, runner, return_hidden_states_before_norm=False)
        meta = build_metadata(
            list(batch.slot_mapping),
            list(batch.block_tables),
            new,
            total,
            1,
            self.device,
            torch_path=self.needs_torch_metadata,
        )
        setattr(fb, META_FIELD, meta)
        with forward_context(ForwardContext(attn_backend=runner.attn_backend), forward_batch=fb):
            runner.attn_backend.init_forward_metadata(fb)
        return fb
