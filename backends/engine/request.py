"""A request inside the engine: its control-plane `Sequence` plus what the data plane samples with."""

from dataclasses import dataclass, field

import torch

from pipo_agent.backends.decode.sampling import Sampler, SamplingParams
from pipo_agent.backends.decode.types import DecodeStep, OutputState
from pipo_agent.backends.engine.sequence import Sequence


@dataclass
class EngineRequest:
    request_id: int
    prompt_ids: list[int]  # as given, before pair padding
    seq: Sequence
    params: SamplingParams
    sampler: Sampler
    generator: torch.Generator
    output: OutputState
    steps: list[DecodeStep] = field(default_factory=list)
    prefix_cached_pairs: int | None = None  # positions reused from the prefix cache at first admission
    num_preemptions: int = 0

    @property
    def phase2(self) -> bool:
        """PIPO phase 2 (MTP + confidence) runs for this request: PIPO with tau < 1."""
        return self.seq.writes_mtp_kv
