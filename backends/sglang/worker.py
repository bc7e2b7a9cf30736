"""The `PIPO` decoding algorithm inside SGLang's scheduler: two tokens per step, no verify pass.

SGLang registers it as a speculative algorithm (the only plugin hook that lets a step commit more than one token)
and calls `forward_batch_generation` once per scheduled batch. Each step runs the embedded engine's own
`PipoRunner` over SGLang's KV pool, so the two engines compute the same thing (Part A §A4):

- phase 1: the compressor folds each new pair into one latent, the backbone writes the pair's K/V and samples
  token1 at a request's last pair;
- phase 2 (tau < 1): the MTP layer, fed token1, writes its K/V at the same slot and drafts token2; the
  confidence head keeps the draft when `conf >= tau` (always when tau < 0) and leaves PAD otherwise.

The plugin keeps, per request, the sequence the model sees — the prompt padded to an even length, then every
committed slot with PAD where a draft was rejected — and hands SGLang only the real tokens: PAD never reaches
the text, the token counts or `max_new_tokens`. KV is written once per pair: pair `j` of a request lives in the
pool row of the request's `j`-th slot (SGLang still reserves a row per token; the other rows stay unused).

SGLang commits one token at prefill, so the prefill's token2 (a real draft, computed there) is held and handed
over at the request's first decode step, in front of that step's tokens: a step emits at most three tokens.
A request SGLang retracts (its KV freed when the pool runs out) is recomputed from its history when it comes
back, as the embedded engine's preemption does; tokens still held then go out first.

Per-request tau: `custom_params={"tau": x}` (x in [-1, 1]); otherwise the server's (`pipo_default_tau`).
`meta_info["pipo_token_kind"]` has one code per output token (SGLang streams per-token values in step with the
tokens): 0 token1 of a step without a draft, 1 token1 whose draft was rejected, 2 token1 whose draft was kept,
3 a kept draft. `pipo_agent.backends.sglang.stats_from_kinds` turns them into steps, drafts proposed and committed, and tokens per step.
"""

import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
from sglang.srt.layers.logits_processor import LogitsProcessorOutput
from sglang.srt.managers.schedule_batch import FINISH_ABORT, Req, ScheduleBatch
from sglang.srt.managers.utils import GenerationBatchResult
from sglang.srt.speculative.base_spec_worker import BaseSpecWorker
from sglang.srt.speculative.ngram_info import NgramVerifyInput

from pipo_agent.backends.decode.errors import SamplingParamsError
from pipo_agent.backends.decode.reference import pad_prompt
from pipo_agent.backends.decode.sampling import Sampler, SamplingParams, new_generator
from pipo_agent.backends.decode.types import DecodeStep, OutputState
from pipo_agent.backends.engine.model_runner import PipoRunner
from pipo_agent.backends.engine.scheduler import BatchKind, ScheduledBatch
from pipo_agent.backends.model.constants import PAIR
from pipo_agent.backends.sglang import (
    ATTENTION_BACKEND,
    DRAFT,
    TOKEN1_KEPT,
    TOKEN1_NO_DRAFT,
    TOKEN1_REJECTED,
    TOKEN_KIND_KEY,
)
from pipo_agent.backends.sglang.attention import PairSlotAttention
from pipo_agent.backends.sglang.launch import DEFAULT_TAU_FIELD

STRIDE = 3  # tokens a step may emit: the held prefill draft, token1, token2
_TOP_K_ALL = 1 << 30


@dataclass
class PipoRequestState:
    """What the runner samples with (the `EngineRequest` fields it reads) plus the pair bookkeeping."""

    params: SamplingParams
    sampler: Sampler
    generator: torch.Generator
    output: OutputState
    history: list[int]  # padded prompt + every committed slot, PAD included: what the model sees
    pairs_in_kv: int = 0  # pairs of `history` whose K/V is written
    held: list[tuple[int, int]] = field(
        default_factory=list
    )  # (token, kind) decided, not yet handed to SGLang
    steps: list[DecodeStep] = field(default_factory=list)
    slot_rows: list[int] = field(default_factory=list)  # pool row of each pair, read once from SGLang's table

    @property
    def phase2(self) -> bool:
        return self.params.tau < 1.0

    @property
    def total_pairs(self) -> int:
        return len(self.history) // PAIR


def sampling_params_for(req: Req, default_tau: float) -> SamplingParams:
    """Our sampling parameters from SGLang's (already normalized: greedy is top_k == 1)."""
    sp = req.sampling_params
    custom = sp.custom_params or {}
    tau = custom.get("tau", default_tau)
    if isinstance(tau, bool) or not isinstance(tau, int | float):
        raise SamplingParamsError(f"custom_params.tau must be a number in [-1, 1], got {tau!r}")
    greedy = sp.top_k == 1
    top_k = 0 if greedy or sp.top_k in (-1, _TOP_K_ALL) else int(sp.top_k)
    max_new = sp.max_new_tokens if sp.max_new_tokens is not None else 1 << 30
    return SamplingParams(
        temperature=0.0 if greedy else float(sp.temperature),
        top_p=float(sp.top_p),
        top_k=top_k,
        presence_penalty=float(sp.presence_penalty or 0.0),
        seed=sp.sampling_seed,
        max_new_tokens=max(1, int(max_new)),
        tau=float(tau),
    )


def unsupported(req: Req) -> str | None:
    """Why the PIPO worker cannot serve this request, or None."""
    sp = req.sampling_params
    if req.return_logprob:
        return "logprobs are not supported by the PIPO SGLang worker"
    if sp.json_schema or sp.regex or sp.ebnf or sp.structural_tag:
        return "constrained decoding (json_schema, regex, ebnf, structural_tag) is not supported with PIPO"
    if sp.frequency_penalty or sp.repetition_penalty != 1.0 or sp.min_new_tokens or sp.logit_bias or sp.min_p:
        return (
            "PIPO samples with temperature, top_p, top_k, presence_penalty and a seed; frequency and "
            "repetition penalties, min_p, min_new_tokens and logit_bias are not supported"
        )
    return None


class PipoWorker(BaseSpecWorker):
    def __init__(self, server_args: Any, gpu_id: int, nccl_port: int, target_worker: Any) -> None:
        super().__init__()
        self.server_args = server_args
        self._target_worker = target_worker
        self.model_runner = target_worker.model_runner
        self.model = self.model_runner.model.pipo
        self.pad = int(self.model.config.pad_token_id)
        self.eos = tuple(self.model.config.eos_token_ids)
        self.default_tau = float(getattr(self.model_runner.model.config, DEFAULT_TAU_FIELD, 0.9))
        self.speculative_num_draft_tokens = STRIDE
        self.device = self.model.embed_tokens.weight.device
        self.states: weakref.WeakKeyDictionary[Req, PipoRequestState] = weakref.WeakKeyDictionary()
        self.runner: PipoRunner | None = None

    @property
    def draft_worker(self) -> None:
        return None

    def alloc_memory_pool(self, **kwargs: Any) -> None:
        self.req_to_token_pool, self.token_to_kv_pool_allocator = self._target_worker.get_memory_pool()

    def _runner(self) -> PipoRunner:
        """Built at the first step: SGLang creates the attention backend after the memory pools."""
        if self.runner is None:
            hybrid = getattr(self.model_runner.model, "hybrid", None)
            if hybrid is not None:  # SGLang's own Qwen3.5 layers over a pair-space forward batch
                from pipo_agent.backends.sglang.hybrid import HybridPipoRunner

                self.runner = HybridPipoRunner(self.model, hybrid, self.model_runner)
                return self.runner
            layers = int(self.model.backbone.config.num_hidden_layers)
            kv = PairSlotAttention.kv_view(self.model_runner.token_to_kv_pool, layers)
            backend = getattr(self.model_runner, "attn_backend", None)
            if not isinstance(backend, PairSlotAttention):
                raise RuntimeError(f"the PIPO worker needs --attention-backend {ATTENTION_BACKEND}")
            self.runner = PipoRunner(self.model, kv, backend, block_size=1)
        return self.runner

    def clear_cache_pool(self) -> None:
        self.states.clear()

    # ---- one scheduler step ----

    def forward_batch_generation(self, batch: ScheduleBatch, on_publish: Any = None, **kwargs: Any) -> Any:
        if batch.forward_mode.is_extend():
            return self._extend(batch)
        if batch.forward_mode.is_decode():
            return self._decode(batch)
        raise RuntimeError(f"the PIPO worker cannot run a {batch.forward_mode.name} batch")

    def _state(self, req: Req) -> PipoRequestState:
        state = self.states.get(req)
        if state is None:
            params = sampling_params_for(req, self.default_tau)
            eos = () if req.sampling_params.ignore_eos else self.eos
            state = PipoRequestState(
                params=params,
                sampler=Sampler(params, suppress_ids=(self.pad,)),
                generator=new_generator(params.seed, self.device),
                output=OutputState(params, eos, None),
                history=pad_prompt(list(req.origin_input_ids), self.pad),
            )
            self.states[req] = state
        return state

    def _extend(self, batch: ScheduleBatch) -> GenerationBatchResult:
        """Prefill, possibly one chunk of it; a re-admitted (retracted) request recomputes its whole history."""
        bs = len(batch.reqs)
        if getattr(self.model_runner.model, "hybrid", None) is not None:
            # The linear-attention state slots SGLang just gave requests are zeroed (or copied) before the
            # forward, as SGLang's own forward does; this step's pair-space forward batch is built after it.
            self.model_runner._maybe_execute_deferred_mamba_cow_and_clear(batch)
        work: list[tuple[int, PipoRequestState, int]] = []
        refused: list[int] = []
        for i, req in enumerate(batch.reqs):
            reason = unsupported(req)
            state = None
            if reason is None:
                try:
                    state = self._state(req)
                except SamplingParamsError as exc:
                    reason = str(exc)
            if state is None:
                req.to_finish = FINISH_ABORT(message=reason, status_code=400, err_type="BadRequestError")
                refused.append(i)
                continue
            prefix = int(batch.prefix_lens[i])
            done = prefix + int(batch.extend_lens[i])
            if prefix == 0 and state.pairs_in_kv:  # retracted by SGLang (out of KV): recompute its history
                state.pairs_in_kv = 0
                state.slot_rows = []  # its slots were freed; the readmission has new ones
                if state.output.finished:  # only its held tokens were left to hand over
                    continue
            last = done >= len(req.full_untruncated_fill_ids)
            hi = state.total_pairs if last else min(done // PAIR, state.total_pairs - 1)
            if hi > state.pairs_in_kv:
                work.append((i, state, hi))
        steps = self._run(batch, work, BatchKind.PREFILL)
        first = torch.full((bs,), self.pad, dtype=torch.int64)
        for i, req in enumerate(batch.reqs):
            state = self.states.get(req)
            if state is None or i in refused:
                continue
            emitted = list(state.held)
            step = steps.get(i)
            if step is not None:
                emitted += self._commit(state, step)
            if not emitted:
                continue  # a prompt chunk that does not reach the last pair
            first[i] = emitted[0][0]
            state.held = emitted[1:]
            self._publish(req, emitted[:1])
        return self._result(batch, first[:, None], torch.ones(bs, dtype=torch.int32), batch.seq_lens)

    def _decode(self, batch: ScheduleBatch) -> GenerationBatchResult:
        bs = len(batch.reqs)
        work: list[tuple[int, PipoRequestState, int]] = []
        for i, req in enumerate(batch.reqs):
            state = self.states[req]
            if not state.output.finished and len(state.held) < 2:  # room for token1 and token2 behind them
                work.append((i, state, state.total_pairs))
            elif not state.held:
                raise RuntimeError(f"request {req.rid} finished for PIPO but not for SGLang")
        steps = self._run(batch, work, BatchKind.DECODE)
        out = torch.zeros(bs, STRIDE, dtype=torch.int64)
        lens = torch.zeros(bs, dtype=torch.int32)
        for i, req in enumerate(batch.reqs):
            state = self.states[req]
            emitted = state.held[:STRIDE]
            state.held = state.held[STRIDE:]
            step = steps.get(i)
            if step is not None:
                emitted += self._commit(state, step)
            out[i, : len(emitted)] = torch.tensor([token for token, _ in emitted])
            lens[i] = len(emitted)
            self._publish(req, emitted)
        return self._result(batch, out, lens, batch.seq_lens + lens.to(batch.seq_lens.device))

    def _run(
        self, batch: ScheduleBatch, work: list[tuple[int, PipoRequestState, int]], kind: BatchKind
    ) -> dict[int, DecodeStep]:
        """Computes pairs `state.pairs_in_kv .. hi - 1` of each request's history; steps where token1 was sampled."""
        if not work:
            return {}
        runner = self._runner()
        table = self.req_to_token_pool.req_to_token
        rows = batch.req_pool_indices.tolist()
        num_new, contexts, tables, slot_mapping, input_ids, last, lookahead = [], [], [], [], [], [], []
        for i, state, hi in work:
            lo = state.pairs_in_kv
            known = len(state.slot_rows)
            if hi > known:  # a request's slots never move while it runs: read only the new ones
                state.slot_rows += table[rows[i], known:hi].tolist()
            slots = state.slot_rows[:hi]
            num_new.append(hi - lo)
            contexts.append(hi)
            tables.append(tuple(slots))
            slot_mapping += slots[lo:hi]
            input_ids += state.history[PAIR * lo : PAIR * hi]
            final = hi == state.total_pairs
            last.append(final)
            lookahead.append(None if final else state.history[PAIR * hi])
        cu = [0]
        for n in num_new:
            cu.append(cu[-1] + n)
        scheduled = ScheduledBatch(
            kind=kind,
            seqs=(),
            num_new_pairs=tuple(num_new),
            cu_seqlens_q=tuple(cu),
            context_lens=tuple(contexts),
            slot_mapping=tuple(slot_mapping),
            block_tables=tuple(tables),
            input_ids=tuple(input_ids),
            is_last_chunk=tuple(last),
            next_token_ids=tuple(lookahead),
        )
        states = [state for _, state, _ in work]
        bind = getattr(runner, "bind", None)
        if bind is not None:
            bind(batch, [i for i, _, _ in work])
        steps = runner.execute(scheduled, states)  # type: ignore[arg-type]
        out: dict[int, DecodeStep] = {}
        for (i, state, hi), step in zip(work, steps, strict=True):
            state.pairs_in_kv = hi
            if step is not None:
                out[i] = step
        return out

    def _commit(self, state: PipoRequestState, step: DecodeStep) -> list[tuple[int, int]]:
        """Records the step; the real tokens it committed, with their kinds: token1, then the draft if kept."""
        state.steps.append(step)
        state.history += step.slots
        if step.draft is None:
            return [(step.token1, TOKEN1_NO_DRAFT)]
        if step.committed and step.token2 is not None:
            return [(step.token1, TOKEN1_KEPT), (step.token2, DRAFT)]
        return [(step.token1, TOKEN1_REJECTED)]

    @staticmethod
    def _publish(req: Req, emitted: list[tuple[int, int]]) -> None:
        """Appends the kinds of the tokens SGLang appends to `req.output_ids` this step, in the same order."""
        if req.customized_info is None:
            req.customized_info = {}
        req.customized_info.setdefault(TOKEN_KIND_KEY, []).extend(kind for _, kind in emitted)

    def _result(
        self, batch: ScheduleBatch, tokens: torch.Tensor, lens: torch.Tensor, new_seq_lens: torch.Tensor
    ) -> GenerationBatchResult:
        device = batch.seq_lens.device
        bs = tokens.shape[0]
        padded = torch.zeros(bs, STRIDE, dtype=torch.int64)
        padded[:, : tokens.shape[1]] = tokens
        flat = padded.flatten().to(device)
        lens = lens.to(device)
        next_input = NgramVerifyInput(
            draft_token_num=STRIDE, new_seq_lens=new_seq_lens, accept_tokens=flat, accept_lens=lens
        )
        is_prefill = tokens.shape[1] == 1
        return GenerationBatchResult(
            logits_output=LogitsProcessorOutput(next_token_logits=None),
            next_token_ids=padded[:, 0].to(device) if is_prefill else flat,
            can_run_cuda_graph=False,
            accept_lens=None if is_prefill else lens,
            new_seq_lens=new_seq_lens,
            next_draft_input=next_input,
            speculative_num_draft_tokens=STRIDE,
        )
