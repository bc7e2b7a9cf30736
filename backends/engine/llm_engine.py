"""The synchronous engine: requests in, one `step()` at a time, per-request outputs out.

`step()` = schedule (control plane) -> execute (model runner) -> postprocess. It is not thread-safe: one owner
calls it (the `AsyncEngine` loop, or a plain loop in `generate`). `make_request` validates without touching the
engine's state, so an async front end can raise a request's errors in the caller and enqueue it between steps.
"""

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipo_agent.backends.decode.sampling import Sampler, SamplingParams, new_generator
from pipo_agent.backends.decode.types import (
    DecodeResult,
    DecodeStats,
    DecodeStep,
    FinishReason,
    OutputState,
    check_prompt,
)
from pipo_agent.backends.engine.attention import make_attention_backend
from pipo_agent.backends.engine.config import EngineConfig
from pipo_agent.backends.engine.errors import ContextLengthError, RequestError
from pipo_agent.backends.engine.model_runner import ARRunner, PipoRunner
from pipo_agent.backends.engine.paged_model import KVCache, check_backbone, kv_layout
from pipo_agent.backends.engine.request import EngineRequest
from pipo_agent.backends.engine.scheduler import Scheduler
from pipo_agent.backends.engine.sequence import PAIR, SequenceStatus
from pipo_agent.backends.engine.sequence import FinishReason as SeqFinish
from pipo_agent.backends.engine.sequence import Sequence as EngineSeq
from pipo_agent.backends.engine.streamer import TextStreamer
from pipo_agent.backends.model.pipo import PipoModel

logger = logging.getLogger(__name__)

Detokenize = Callable[[list[int]], str]


@dataclass(frozen=True)
class RequestStats:
    decode: DecodeStats
    prefix_cached_tokens: int  # prompt tokens whose KV came from the prefix cache
    num_preemptions: int


@dataclass(frozen=True)
class RequestOutput:
    """What one step produced for one request."""

    request_id: int
    step: DecodeStep | None  # None for a prompt chunk that does not reach the last position
    new_token_ids: tuple[int, ...]  # real tokens added to the result this step
    text_delta: str
    finished: bool
    finish_reason: str | None  # "stop", "length" or "abort" once finished
    result: DecodeResult | None = None  # on a finish other than abort
    stats: RequestStats | None = None


@dataclass
class _Tracked:
    req: EngineRequest
    streamer: TextStreamer | None
    num_tokens_sent: int = 0


class LLMEngine:
    def __init__(
        self,
        model: nn.Module,
        config: EngineConfig,
        *,
        eos_token_ids: Sequence[int],
        pad_token_id: int,
        detokenize: Detokenize | None = None,
        attention: str | None = None,
        kv_dtype: torch.dtype | None = None,
        record_logits: bool = False,
    ) -> None:
        self.is_pipo = isinstance(model, PipoModel)
        backbone = model.backbone if isinstance(model, PipoModel) else model
        check_backbone(backbone.config)
        self.model = model
        self.config = config
        self.eos_token_ids = tuple(eos_token_ids)
        self.pad_token_id = pad_token_id
        self.detokenize = detokenize
        self.vocab_size = int(backbone.config.vocab_size)
        device = next(model.parameters()).device
        self.device = device
        self.backend = make_attention_backend(attention, device)
        num_layers, num_kv_heads, head_dim = kv_layout(backbone.config)
        dtype = kv_dtype or next(model.parameters()).dtype
        self.kv = KVCache.allocate(
            config.num_kv_slots, num_layers, num_kv_heads, head_dim, dtype, device, with_mtp=self.is_pipo
        )
        if isinstance(model, PipoModel):
            self.runner: PipoRunner | ARRunner = PipoRunner(
                model, self.kv, self.backend, config.block_size, record_logits=record_logits
            )
        else:
            self.runner = ARRunner(
                model, self.kv, self.backend, config.block_size, record_logits=record_logits
            )
        self.scheduler = Scheduler(config)
        self._tracked: dict[int, _Tracked] = {}
        self._ids = itertools.count()

    # ---- requests ----

    def make_request(self, prompt_ids: Sequence[int], params: SamplingParams) -> EngineRequest:
        """Validates a request (raising a clear error) without changing the engine's state."""
        if not isinstance(params, SamplingParams):
            raise RequestError(f"params must be SamplingParams, got {type(params).__name__}")
        prompt = check_prompt(prompt_ids, self.vocab_size)
        width = PAIR if self.is_pipo else 1
        positions = -(-len(prompt) // width)
        if positions > self.config.max_model_pairs:
            unit = "pairs" if self.is_pipo else "tokens"
            raise ContextLengthError(
                f"the prompt of {len(prompt)} tokens needs {positions} {unit}, over the context of "
                f"{self.config.max_model_pairs} {unit} ({width * self.config.max_model_pairs} prompt tokens at most)"
            )
        request_id = next(self._ids)
        seq = EngineSeq(
            request_id,
            prompt,
            pad_token_id=self.pad_token_id,
            max_new_tokens=params.max_new_tokens,
            tau=params.tau if self.is_pipo else 1.0,
            width=width,
        )
        return EngineRequest(
            request_id=request_id,
            prompt_ids=prompt,
            seq=seq,
            params=params,
            sampler=Sampler(params, suppress_ids=(self.pad_token_id,) if self.is_pipo else ()),
            generator=new_generator(params.seed, self.device),
            output=OutputState(params, self.eos_token_ids, self.detokenize),
        )

    def enqueue(self, req: EngineRequest) -> int:
        self.scheduler.add(req.seq)
        streamer = TextStreamer(self.detokenize, req.params.stop) if self.detokenize else None
        self._tracked[req.request_id] = _Tracked(req, streamer)
        return req.request_id

    def add_request(self, prompt_ids: Sequence[int], params: SamplingParams) -> int:
        return self.enqueue(self.make_request(prompt_ids, params))

    def abort(self, request_id: int) -> bool:
        """Cancels a request and frees its KV blocks now; False if it is not in the engine."""
        if self._tracked.pop(request_id, None) is None:
            return False
        return self.scheduler.abort(request_id)

    @property
    def num_unfinished(self) -> int:
        return len(self._tracked)

    def has_unfinished(self) -> bool:
        return bool(self._tracked)

    # ---- one step ----

    def step(self) -> list[RequestOutput]:
        running = {seq.seq_id for seq in self.scheduler.running}
        batch = self.scheduler.schedule()
        for seq_id in running:
            tracked = self._tracked.get(seq_id)
            if tracked is not None and tracked.req.seq.status is SequenceStatus.PREEMPTED:
                tracked.req.num_preemptions += 1
        if batch is None:
            return []
        requests = [self._tracked[seq.seq_id].req for seq in batch.seqs]
        for i, req in enumerate(requests):
            if req.prefix_cached_pairs is None:
                req.prefix_cached_pairs = batch.context_lens[i] - batch.num_new_pairs[i]
        steps = self.runner.execute(batch, requests)
        return [self._postprocess(req, step) for req, step in zip(requests, steps, strict=True)]

    def _postprocess(self, req: EngineRequest, step: DecodeStep | None) -> RequestOutput:
        tracked = self._tracked[req.request_id]
        out = req.output
        done = self.scheduler.postprocess(req.seq, step.slots if step else (), out.finished)
        if step is not None:
            req.steps.append(step)
        if done and not out.finished:
            assert req.seq.finish_reason is SeqFinish.LENGTH
            out.finish_reason = FinishReason.LENGTH  # the context is full
        new = tuple(out.token_ids[tracked.num_tokens_sent :])
        tracked.num_tokens_sent = len(out.token_ids)
        if not done:
            delta = tracked.streamer.update(out.token_ids) if tracked.streamer else ""
            return RequestOutput(req.request_id, step, new, delta, False, None)
        del self._tracked[req.request_id]
        padded = req.seq.prompt_token_ids
        result = out.result(padded, req.steps)
        delta = tracked.streamer.finish(result.text or "") if tracked.streamer else ""
        stats = RequestStats(
            decode=result.stats,
            prefix_cached_tokens=min(len(req.prompt_ids), (req.prefix_cached_pairs or 0) * req.seq.width),
            num_preemptions=req.num_preemptions,
        )
        return RequestOutput(
            req.request_id, step, new, delta, True, str(result.finish_reason), result=result, stats=stats
        )

    # ---- convenience ----

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams | Sequence[SamplingParams]
    ) -> list[DecodeResult]:
        """Runs `prompts` to completion together (continuous batching) and returns results in order."""
        per = [params] * len(prompts) if isinstance(params, SamplingParams) else list(params)
        if len(per) != len(prompts):
            raise RequestError(f"{len(prompts)} prompts but {len(per)} sampling params")
        ids = [self.add_request(p, sp) for p, sp in zip(prompts, per, strict=True)]
        results: dict[int, DecodeResult] = {}
        while len(results) < len(ids):
            for output in self.step():
                if output.finished and output.result is not None:
                    results[output.request_id] = output.result
        return [results[i] for i in ids]


def engine_config_for(
    model: nn.Module,
    *,
    kv_cache_bytes: int = 256 * 2**20,
    block_size: int = 16,
    max_num_seqs: int = 64,
    max_num_batched_pairs: int = 2048,
    chunk_pairs: int = 512,
    max_model_pairs: int | None = None,
    kv_dtype: torch.dtype | None = None,
    enable_prefix_caching: bool = True,
) -> EngineConfig:
    """An `EngineConfig` whose KV pool fits `kv_cache_bytes` (at least one full context)."""
    backbone = model.backbone if isinstance(model, PipoModel) else model
    num_layers, num_kv_heads, head_dim = kv_layout(backbone.config)
    dtype = kv_dtype or next(model.parameters()).dtype
    layers = num_layers + (1 if isinstance(model, PipoModel) else 0)  # the MTP layer has its own KV
    per_slot = KVCache.bytes_per_slot(layers, num_kv_heads, head_dim, dtype)
    context = int(max_model_pairs or backbone.config.max_position_embeddings)
    num_blocks = max(kv_cache_bytes // (per_slot * block_size), -(-context // block_size))
    return EngineConfig(
        block_size=block_size,
        num_blocks=int(num_blocks),
        max_num_seqs=max_num_seqs,
        max_num_batched_pairs=max(max_num_batched_pairs, max_num_seqs),
        chunk_pairs=min(chunk_pairs, max(max_num_batched_pairs, max_num_seqs)),
        max_model_pairs=context,
        enable_prefix_caching=enable_prefix_caching,
    )


def load_engine(
    model_dir: str | Path | None = None,
    *,
    mode: str = "pipo",
    device: str = "cpu",
    attention: str | None = None,
    **config_kwargs: object,
) -> tuple[LLMEngine, object]:
    """An engine over a PIPO checkpoint directory (default: the shipped model) or its AR teacher
    (`mode="ar"`, from `<dir>/teacher`), and the tokenizer. `mode` is "pipo" or "ar"."""
    from transformers import AutoModelForCausalLM

    from pipo_agent.backends.checkpoints import default_model_dir
    from pipo_agent.backends.model.checkpoint import load_pipo
    from pipo_agent.backends.train.tokenizer import load_tokenizer

    if mode not in ("pipo", "ar"):
        raise RequestError(f"unknown engine mode {mode!r}; valid: 'pipo', 'ar'")
    directory = Path(model_dir) if model_dir is not None else default_model_dir()
    tokenizer = load_tokenizer(directory)
    pipo = load_pipo(directory)
    model: nn.Module
    if mode == "pipo":
        model = pipo.to(device).eval()
    else:
        model = AutoModelForCausalLM.from_pretrained(str(directory / "teacher")).float().to(device).eval()
    engine = LLMEngine(
        model,
        engine_config_for(model, **config_kwargs),  # type: ignore[arg-type]
        eos_token_ids=pipo.config.eos_token_ids,
        pad_token_id=pipo.config.pad_token_id,
        detokenize=lambda ids: tokenizer.decode(ids, skip_special_tokens=False),
        attention=attention,
    )
    return engine, tokenizer
