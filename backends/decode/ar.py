"""The AR baseline decoder: the same backbone, one token per step, KV-cached, with the same sampling
parameters, stop rules, statistics and result types as the PIPO decoder (tau is ignored; drafts are 0).

It runs the causal LM's base model and applies `lm_head` to the last position only, so a long prompt never
materialises `[T, V]` logits. Context check: prompt tokens + max_new_tokens <= max_position_embeddings.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel

from pipo_agent.backends.decode.sampling import Sampler, SamplingParams, new_generator
from pipo_agent.backends.decode.types import (
    DecodeResult,
    DecodeStep,
    Detokenize,
    OutputState,
    check_context,
    check_prompt,
)
from pipo_agent.backends.model.backbone import cache_kwarg


@dataclass
class _Request:
    params: SamplingParams
    prompt_ids: list[int]
    sampler: Sampler
    generator: torch.Generator
    output: OutputState


class ARDecoder:
    def __init__(
        self,
        model: PreTrainedModel,
        eos_token_ids: Sequence[int] = (),
        detokenize: Detokenize | None = None,
        *,
        record_logits: bool = False,
    ) -> None:
        self.model = model
        self.eos_token_ids = tuple(eos_token_ids)
        self.detokenize = detokenize
        self.record_logits = record_logits
        self._cache_kw = cache_kwarg(model.model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def stream(self, prompt_ids: Sequence[int], params: SamplingParams) -> Iterator[DecodeStep]:
        """Validates now (errors are raised here, not on the first `next`), then yields one step per token."""
        return self._steps(self._begin(prompt_ids, params))

    def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> DecodeResult:
        request = self._begin(prompt_ids, params)
        steps = list(self._steps(request))
        return request.output.result(request.prompt_ids, steps)

    def _begin(self, prompt_ids: Sequence[int], params: SamplingParams) -> _Request:
        config = self.model.config
        ids = check_prompt(prompt_ids, config.vocab_size)
        check_context(
            len(ids), params.max_new_tokens, getattr(config, "max_position_embeddings", None), "tokens"
        )
        return _Request(
            params=params,
            prompt_ids=ids,
            sampler=Sampler(params),
            generator=new_generator(params.seed, self.device),
            output=OutputState(params, self.eos_token_ids, self.detokenize),
        )

    def _steps(self, request: _Request) -> Iterator[DecodeStep]:
        with torch.inference_mode():
            cache = DynamicCache(config=self.model.config)
            step = self._step(request, 0, request.prompt_ids, 0, cache)
        yield step
        while step.finish_reason is None:
            with torch.inference_mode():
                step = self._step(request, step.index + 1, [step.token1], step.position + 1, cache)
            yield step

    def _step(
        self, request: _Request, index: int, input_ids: list[int], start: int, cache: DynamicCache
    ) -> DecodeStep:
        """Feed `input_ids` at positions start.. and sample the token after the last one."""
        out, params = request.output, request.params
        ids = torch.tensor([input_ids], device=self.device)  # [1, n]
        positions = torch.arange(start, start + len(input_ids), device=self.device)[None]  # [1, n]
        hidden = self.model.model(
            input_ids=ids, position_ids=positions, use_cache=True, **{self._cache_kw: cache}
        ).last_hidden_state  # [1, n, H]
        logits = self.model.lm_head(hidden[:, -1])[0]  # [V]
        sampled = request.sampler.sample(logits, out.seen, request.generator)
        out.push(sampled.token_id, sampled.logprob)
        return DecodeStep(
            index=index,
            position=start + len(input_ids) - 1,
            token1=sampled.token_id,
            draft=None,
            token2=None,
            conf=None,
            committed=False,
            slots=(sampled.token_id,),
            logprob1=sampled.logprob if params.logprobs else None,
            logprob2=None,
            finish_reason=out.finish_reason,
            elapsed_s=out.elapsed(),
            logits1=logits.float() if self.record_logits else None,
        )
