"""The PIPO reference decoder: one request, plain KV caches, no paging. It is the correctness oracle the
engine and the SGLang plugin are tested against (PIPO_SPEC A4 and B §4, with the prefill-MTP fix).

Step at pair j (the prefill is the step at the prompt's last pair, L-1):
    h_j    = backbone(compress(pair_j))              # pair_j = (token1, token2 or PAD) of the previous step
    token1 ~ lm_head(h_j)                            # = x_{2j+2}
    m_j    = mtp(E[token1], h_j)                     # phase 2, skipped when tau >= 1
    draft  ~ lm_head(m_j)                            # = x_{2j+3} if committed
    commit iff tau < 0 or sigmoid(conf(h_j, m_j, draft)) >= tau; otherwise the slot is PAD
The prefill runs the MTP teacher-forced over the whole prompt (input x_{2j+2} for pairs j < L-1, the sampled
token1 at L-1), so its cache holds every prompt position and the prefill emits a real draft.

Decisions the spec leaves open:
  - PAD is suppressed when sampling token1 and the draft: a sampled PAD would break the PAD-at-odd-index rule
    or be indistinguishable from a rejection.
  - When the request finishes at token1 (EOS, stop string, budget), phase 2 is not run for that step and the
    step appends only (token1,), so `slots` has odd length; a teacher-forced check appends one PAD.
  - The context check is `prompt pairs + max_new_tokens <= max_position_embeddings` (positions count pairs):
    enough for the worst case of every draft rejected, and for a teacher-forced pass over prompt + slots.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from pipo_agent.backends.decode.sampling import Sampler, SamplingParams, new_generator
from pipo_agent.backends.decode.types import (
    DecodeResult,
    DecodeStep,
    Detokenize,
    OutputState,
    check_context,
    check_prompt,
)
from pipo_agent.backends.model.constants import PAIR
from pipo_agent.backends.model.pipo import PipoModel


def commits(conf: float, tau: float) -> bool:
    """The gate for 0 <= tau < 1 and tau < 0 (tau >= 1 never reaches it: phase 2 is skipped)."""
    return tau < 0 or conf >= tau


def pad_prompt(prompt_ids: list[int], pad_token_id: int) -> list[int]:
    """Odd prompts get one PAD at the end, so the prompt/response boundary is a pair boundary."""
    return prompt_ids + [pad_token_id] * (len(prompt_ids) % PAIR)


@dataclass
class _Request:
    params: SamplingParams
    padded_prompt_ids: list[int]
    sampler: Sampler
    generator: torch.Generator
    output: OutputState

    @property
    def phase2(self) -> bool:
        return self.params.tau < 1.0


class PipoReferenceDecoder:
    def __init__(
        self, model: PipoModel, detokenize: Detokenize | None = None, *, record_logits: bool = False
    ) -> None:
        self.model = model
        self.detokenize = detokenize
        self.record_logits = record_logits
        self.pad_token_id = model.config.pad_token_id

    @property
    def device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    def stream(self, prompt_ids: Sequence[int], params: SamplingParams) -> Iterator[DecodeStep]:
        """Validates now (errors are raised here, not on the first `next`), then yields one step per pair."""
        return self._steps(self._begin(prompt_ids, params))

    def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> DecodeResult:
        request = self._begin(prompt_ids, params)
        steps = list(self._steps(request))
        return request.output.result(request.padded_prompt_ids, steps)

    def _begin(self, prompt_ids: Sequence[int], params: SamplingParams) -> _Request:
        backbone = self.model.backbone.config
        padded = pad_prompt(check_prompt(prompt_ids, backbone.vocab_size), self.pad_token_id)
        limit = getattr(backbone, "max_position_embeddings", None)
        check_context(len(padded) // PAIR, params.max_new_tokens, limit, "pairs")
        return _Request(
            params=params,
            padded_prompt_ids=padded,
            sampler=Sampler(params, suppress_ids=(self.pad_token_id,)),
            generator=new_generator(params.seed, self.device),
            output=OutputState(params, self.model.config.eos_token_ids, self.detokenize),
        )

    def _steps(self, request: _Request) -> Iterator[DecodeStep]:
        model = self.model
        with torch.inference_mode():
            backbone_cache, mtp_cache = model.new_caches()
            step = self._prefill(request, backbone_cache, mtp_cache)
        yield step
        while step.finish_reason is None:
            with torch.inference_mode():
                step = self._decode(request, step, backbone_cache, mtp_cache)
            yield step

    def _prefill(self, request: _Request, backbone_cache: object, mtp_cache: object) -> DecodeStep:
        model = self.model
        ids = torch.tensor([request.padded_prompt_ids], device=self.device)  # [1, T]
        hidden = model.run_backbone(model.compress(ids), 0, backbone_cache)  # [1, L, H]

        def mtp(token1: int) -> torch.Tensor:
            last = torch.tensor([[token1]], device=self.device)
            token1_ids = torch.cat([ids[:, PAIR::PAIR], last], dim=1)  # [1, L]: x_2, x_4, ..., sampled token1
            return model.run_mtp(token1_ids, hidden, 0, mtp_cache)[:, -1]  # [1, H]

        return self._pair_step(request, 0, hidden.shape[1] - 1, hidden[:, -1], mtp)

    def _decode(
        self, request: _Request, previous: DecodeStep, backbone_cache: object, mtp_cache: object
    ) -> DecodeStep:
        model = self.model
        position = previous.position + 1
        pair = torch.tensor([previous.slots], device=self.device)  # [1, 2]
        hidden = model.run_backbone(model.compress(pair), position, backbone_cache)  # [1, 1, H]

        def mtp(token1: int) -> torch.Tensor:
            token1_ids = torch.tensor([[token1]], device=self.device)
            return model.run_mtp(token1_ids, hidden, position, mtp_cache)[:, -1]  # [1, H]

        return self._pair_step(request, previous.index + 1, position, hidden[:, -1], mtp)

    def _pair_step(
        self,
        request: _Request,
        index: int,
        position: int,
        hidden: torch.Tensor,
        mtp: Callable[[int], torch.Tensor],
    ) -> DecodeStep:
        """Phase 1 and phase 2 at one pair; `hidden` `[1, H]` is the backbone hidden of that pair."""
        model, out, params = self.model, request.output, request.params
        start = len(out.slots)
        logits1 = model.lm_head(hidden)[0]  # [V]
        first = request.sampler.sample(logits1, out.seen, request.generator)
        finished = out.push(first.token_id, first.logprob)
        draft, conf, logits2, committed = None, None, None, False
        if not finished and request.phase2:
            mtp_hidden = mtp(first.token_id)  # [1, H]
            mtp_logits = model.lm_head(mtp_hidden)  # [1, V]
            logits2 = mtp_logits[0]
            draft = request.sampler.sample(logits2, out.seen, request.generator)
            draft_ids = torch.tensor([draft.token_id], device=self.device)
            conf_logit = model.confidence_logits(hidden, mtp_hidden, draft_ids, mtp_logits)  # [1]
            conf = float(torch.sigmoid(conf_logit.float())[0])
            committed = commits(conf, params.tau)
        if committed:
            assert draft is not None
            out.push(draft.token_id, draft.logprob)
        elif not finished:
            out.push_pad(self.pad_token_id)
        keep = self.record_logits
        return DecodeStep(
            index=index,
            position=position,
            token1=first.token_id,
            draft=draft.token_id if draft is not None else None,
            token2=draft.token_id if committed and draft is not None else None,
            conf=conf,
            committed=committed,
            slots=tuple(out.slots[start:]),
            logprob1=first.logprob if params.logprobs else None,
            logprob2=draft.logprob if params.logprobs and draft is not None else None,
            finish_reason=out.finish_reason,
            elapsed_s=out.elapsed(),
            logits1=logits1.float() if keep else None,
            logits2=logits2.float() if keep and logits2 is not None else None,
        )
