"""Executes one `ScheduledBatch` on the model: the data plane of the engine.

PIPO step (Part A §A4), for every sequence of the batch at once:
  phase 1  latents = compress(pairs); backbone over the new pairs (paged, pair slots); token1 sampled at each
           sequence's last pair when its chunk reaches it
  phase 2  (tau < 1 only) the MTP over the same pairs, fed token1 ids: teacher-forced with the next pair's first
           slot inside a chunk, with the scheduler's `next_token_ids` at a chunk's end, and with the sampled token1
           at the last pair; then the draft is sampled and the confidence head keeps it or leaves PAD
AR step: the same backbone over single-token positions, no compressor, no MTP.
Sampling, stop rules and bookkeeping are the reference decoder's own (`Sampler`, `OutputState`), per request
and in the same order, so a seeded request draws the same random numbers in both.
"""

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pipo_agent.backends.decode.reference import commits
from pipo_agent.backends.decode.sampling import SampledToken
from pipo_agent.backends.decode.types import DecodeStep
from pipo_agent.backends.engine.attention import (
    AttentionBackend,
    AttentionMetadata,
    batch_metadata,
    build_metadata,
)
from pipo_agent.backends.engine.paged_model import KVCache, run_layers, run_mtp
from pipo_agent.backends.engine.request import EngineRequest
from pipo_agent.backends.engine.scheduler import ScheduledBatch
from pipo_agent.backends.model.constants import PAIR
from pipo_agent.backends.model.pipo import PipoModel


class StepProfiler:
    """Wall time per phase of the runner's steps (synchronizing CUDA at each mark), for the benchmark."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}
        self.steps = 0
        self._last = 0.0
        self._active = False

    def start(self, *, decode: bool) -> None:
        """Begins a step; only decode steps are recorded (a prefill step's cost scales with the prompt)."""
        self._active = decode
        if not decode:
            return
        self._sync()
        self._last = time.perf_counter()
        self.steps += 1

    def mark(self, phase: str) -> None:
        if not self._active:
            return
        self._sync()
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._last
        self._last = now

    def per_step_ms(self) -> dict[str, float]:
        return {k: 1e3 * v / max(1, self.steps) for k, v in self.seconds.items()}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class NoProfiler:
    def start(self, *, decode: bool) -> None:
        pass

    def mark(self, phase: str) -> None:
        pass


def sample_rows(
    logits: torch.Tensor, requests: Sequence[EngineRequest], suppress_id: int | None
) -> list[SampledToken]:
    """One token per row of `logits` `[S, V]` for `requests[s]`, exactly as each request's `Sampler` would.

    Greedy rows without a presence penalty in effect are done together (one argmax, one log-softmax, one
    device-to-host copy for the whole batch); the rest go through their request's sampler and generator."""
    out: list[SampledToken | None] = [None] * len(requests)
    fast = [
        s
        for s, req in enumerate(requests)
        if req.params.greedy and not (req.params.presence_penalty and req.output.seen)
    ]
    if fast:
        rows = logits[fast].float()  # [F, V]
        if suppress_id is not None:
            rows[:, suppress_id] = float("-inf")
        tokens = rows.argmax(-1)  # [F]
        logprobs = rows.log_softmax(-1).gather(1, tokens[:, None])[:, 0]  # [F]
        for s, token, logprob in zip(fast, tokens.tolist(), logprobs.tolist(), strict=True):
            out[s] = SampledToken(token_id=int(token), logprob=float(logprob))
    for s, req in enumerate(requests):
        if out[s] is None:
            out[s] = req.sampler.sample(logits[s], req.output.seen, req.generator)
    return [t for t in out if t is not None]


class _Runner:
    """What both runners share: the pool, the attention backend, the profiler and the per-step metadata."""

    def __init__(
        self,
        model: nn.Module,
        kv: KVCache,
        backend: AttentionBackend,
        block_size: int,
        device: torch.device,
        record_logits: bool,
    ) -> None:
        self.model = model
        self.kv = kv
        self.backend = backend
        self.block_size = block_size
        self.record_logits = record_logits
        self.device = device
        self.profiler: StepProfiler | NoProfiler = NoProfiler()

    def _begin(self, batch: ScheduledBatch) -> tuple[AttentionMetadata, torch.Tensor]:
        """Starts the step's profile; the attention metadata and the new rows' positions `[N]`."""
        self.profiler.start(decode=not batch.is_prefill)
        meta = batch_metadata(
            batch, self.block_size, self.device, torch_path=self.backend.needs_torch_metadata
        )
        self.profiler.mark("metadata")
        return meta, torch.tensor(batch.positions, device=self.device)


class PipoRunner(_Runner):
    def __init__(
        self,
        model: PipoModel,
        kv: KVCache,
        backend: AttentionBackend,
        block_size: int,
        *,
        record_logits: bool = False,
    ) -> None:
        super().__init__(model, kv, backend, block_size, model.embed_tokens.weight.device, record_logits)
        self.model: PipoModel = model

    # ---- what a runner over other layers (SGLang's hybrid Qwen3.5) replaces ----

    def _backbone(self, latents: torch.Tensor, positions: torch.Tensor, meta: Any) -> torch.Tensor:
        """The backbone's decoder stack and final norm over the new pairs' latents `[N, H]`."""
        return run_layers(self.model.backbone.model, latents, positions, self.kv, meta, self.backend)

    def _mtp(
        self, token_embeds: torch.Tensor, hidden: torch.Tensor, positions: torch.Tensor, meta: Any
    ) -> torch.Tensor:
        """The MTP module over rows fed `E[token]` and the backbone's hidden; writes its K/V."""
        assert self.kv.mtp is not None
        model = self.model
        rotary = model.backbone.model.rotary_emb
        return run_mtp(model.mtp, rotary, token_embeds, hidden, positions, self.kv.mtp, meta, self.backend)

    def _mtp_sequences(self, batch: ScheduledBatch, requests: Sequence[EngineRequest]) -> list[int]:
        """The sequences whose MTP K/V this step writes: those that draft (tau < 1)."""
        return [i for i in range(batch.num_seqs) if requests[i].phase2]

    @torch.inference_mode()
    def execute(self, batch: ScheduledBatch, requests: Sequence[EngineRequest]) -> list[DecodeStep | None]:
        model, device, prof = self.model, self.device, self.profiler
        meta, positions = self._begin(batch)
        ids = torch.tensor(batch.input_ids, device=device)  # [2N]
        latents = model.compress(ids[None])[0]  # [1, 2N] -> [N, H]
        hidden = self._backbone(latents, positions, meta)  # [N, H]
        prof.mark("backbone")

        rows = list(batch.logits_indices)  # one row per sequence whose chunk reaches its last pair
        sampling = [i for i, last in enumerate(batch.is_last_chunk) if last]
        logits1 = model.lm_head(hidden[rows]) if rows else None  # [S, V]
        steps: list[DecodeStep | None] = [None] * batch.num_seqs
        token1: dict[int, int] = {}
        firsts = {}
        pad = int(model.config.pad_token_id)
        if sampling:
            assert logits1 is not None
            for i, first in zip(
                sampling, sample_rows(logits1, [requests[i] for i in sampling], pad), strict=True
            ):
                requests[i].output.push(first.token_id, first.logprob)
                token1[i], firsts[i] = first.token_id, first
        prof.mark("head+sample")

        phase2 = self._mtp_sequences(batch, requests)
        drafts = self._phase2(batch, requests, meta, positions, hidden, phase2, token1) if phase2 else {}
        prof.mark("mtp+confidence")
        for s, i in enumerate(sampling):
            steps[i] = self._finish_step(batch, requests[i], i, firsts[i], drafts.get(i), logits1, s)
        prof.mark("bookkeeping")
        return steps

    def _phase2(
        self,
        batch: ScheduledBatch,
        requests: Sequence[EngineRequest],
        meta: AttentionMetadata,
        positions: torch.Tensor,
        hidden: torch.Tensor,
        phase2: list[int],
        token1: dict[int, int],
    ) -> dict[int, tuple]:
        """MTP over the phase-2 sequences' pairs (writes their MTP KV); drafts and confidences where sampled."""
        model, device = self.model, self.device
        row_ids: list[int] = []
        mtp_tokens: list[int] = []
        for i in phase2:
            start, end = batch.cu_seqlens_q[i], batch.cu_seqlens_q[i + 1]
            row_ids += range(start, end)
            nxt = batch.next_token_ids[i]
            last = token1.get(i) if nxt is None else nxt
            # Inside the chunk: the next pair's first slot; at its end: the lookahead slot or the sampled token1.
            mtp_tokens += [batch.input_ids[PAIR * (r + 1)] for r in range(start, end - 1)]
            mtp_tokens.append(last if last is not None else int(model.config.pad_token_id))
        if len(phase2) == batch.num_seqs:
            sub = meta
        else:
            sub = build_metadata(
                [batch.slot_mapping[r] for r in row_ids],
                [tuple(batch.block_tables[i]) for i in phase2],
                [batch.num_new_pairs[i] for i in phase2],
                [batch.context_lens[i] for i in phase2],
                self.block_size,
                device,
                torch_path=self.backend.needs_torch_metadata,
            )
        rows = torch.tensor(row_ids, device=device)
        tokens = torch.tensor(mtp_tokens, device=device)
        m = self._mtp(model.embed_tokens(tokens), hidden[rows], positions[rows], sub)  # [N2, H]
        # Drafts at the last pair of each phase-2 sequence that sampled token1 and is not finished.
        wanted = [
            (k, i)
            for k, i in enumerate(phase2)
            if requests[i].phase2 and i in token1 and not requests[i].output.finished
        ]
        if not wanted:
            return {}
        ends = [sum(batch.num_new_pairs[j] for j in phase2[: k + 1]) - 1 for k, _ in wanted]
        m_rows = m[ends]  # [S2, H]
        h_rows = hidden[[batch.cu_seqlens_q[i + 1] - 1 for _, i in wanted]]  # [S2, H]
        logits2 = model.lm_head(m_rows)  # [S2, V]
        pad = int(model.config.pad_token_id)
        samples = sample_rows(logits2, [requests[i] for _, i in wanted], pad)
        draft_ids = torch.tensor([d.token_id for d in samples], device=device)
        conf = torch.sigmoid(model.confidence_logits(h_rows, m_rows, draft_ids, logits2).float()).tolist()
        return {
            i: (samples[s], float(conf[s]), logits2[s] if self.record_logits else None)
            for s, (_, i) in enumerate(wanted)
        }

    def _finish_step(
        self,
        batch: ScheduledBatch,
        req: EngineRequest,
        i: int,
        first: object,
        drafted: tuple | None,
        logits1: torch.Tensor | None,
        s: int,
    ) -> DecodeStep:
        out, params = req.output, req.params
        start = len(out.slots) - 1  # token1 is already pushed
        draft = conf = logits2 = None
        committed = False
        if drafted is not None:
            draft, conf, logits2 = drafted
            committed = commits(conf, params.tau)
        if committed:
            out.push(draft.token_id, draft.logprob)
        elif not out.finished:  # rejected, or phase 2 skipped (tau >= 1): the pair's second slot is PAD
            out.push_pad(self.model.config.pad_token_id)
        return DecodeStep(
            index=len(req.steps),
            position=batch.context_lens[i] - 1,
            token1=first.token_id,  # type: ignore[attr-defined]
            draft=draft.token_id if draft is not None else None,
            token2=draft.token_id if committed and draft is not None else None,
            conf=conf,
            committed=committed,
            slots=tuple(out.slots[start:]),
            logprob1=first.logprob if params.logprobs else None,  # type: ignore[attr-defined]
            logprob2=draft.logprob if params.logprobs and draft is not None else None,
            finish_reason=out.finish_reason,
            elapsed_s=out.elapsed(),
            logits1=logits1[s].float().clone() if self.record_logits and logits1 is not None else None,
            logits2=logits2.float().clone() if logits2 is not None else None,
        )


class ARRunner(_Runner):
    """The AR baseline on the same engine: one token per position, the backbone's own embedding and head."""

    def __init__(
        self,
        model: nn.Module,
        kv: KVCache,
        backend: AttentionBackend,
        block_size: int,
        *,
        record_logits: bool = False,
    ) -> None:
        super().__init__(
            model, kv, backend, block_size, model.model.embed_tokens.weight.device, record_logits
        )

    @torch.inference_mode()
    def execute(self, batch: ScheduledBatch, requests: Sequence[EngineRequest]) -> list[DecodeStep | None]:
        model, device, prof = self.model, self.device, self.profiler
        meta, positions = self._begin(batch)
        ids = torch.tensor(batch.input_ids, device=device)  # [N]
        embeds = model.model.embed_tokens(ids)  # [N, H]
        hidden = run_layers(model.model, embeds, positions, self.kv, meta, self.backend)
        prof.mark("backbone")
        rows = list(batch.logits_indices)
        steps: list[DecodeStep | None] = [None] * batch.num_seqs
        if not rows:
            return steps
        logits = model.lm_head(hidden[rows])  # [S, V]
        sampling = [i for i, last in enumerate(batch.is_last_chunk) if last]
        firsts = sample_rows(logits, [requests[i] for i in sampling], None)
        for s, (i, first) in enumerate(zip(sampling, firsts, strict=True)):
            req = requests[i]
            out = req.output
            out.push(first.token_id, first.logprob)
            steps[i] = DecodeStep(
                index=len(req.steps),
                position=batch.context_lens[i] - 1,
                token1=first.token_id,
                draft=None,
                token2=None,
                conf=None,
                committed=False,
                slots=(first.token_id,),
                logprob1=first.logprob if req.params.logprobs else None,
                logprob2=None,
                finish_reason=out.finish_reason,
                elapsed_s=out.elapsed(),
                logits1=logits[s].float().clone() if self.record_logits else None,
            )
        prof.mark("head+sample")
        return steps
