"""Decoders: the PIPO reference decoder (the correctness oracle), the AR baseline decoder, and the sampling
parameters, results and errors they share. Batch of one, plain KV caches; the engine does batching and paging.
"""

from pipo_agent.backends.decode.ar import ARDecoder
from pipo_agent.backends.decode.errors import (
    ContextLengthError,
    DecodeError,
    PromptError,
    SamplingParamsError,
)
from pipo_agent.backends.decode.reference import PipoReferenceDecoder, commits, pad_prompt
from pipo_agent.backends.decode.sampling import SampledToken, Sampler, SamplingParams, new_generator
from pipo_agent.backends.decode.types import DecodeResult, DecodeStats, DecodeStep, Detokenize, FinishReason

__all__ = [
    "ARDecoder",
    "ContextLengthError",
    "DecodeError",
    "DecodeResult",
    "DecodeStats",
    "DecodeStep",
    "Detokenize",
    "FinishReason",
    "PipoReferenceDecoder",
    "PromptError",
    "SampledToken",
    "Sampler",
    "SamplingParams",
    "SamplingParamsError",
    "commits",
    "new_generator",
    "pad_prompt",
]
