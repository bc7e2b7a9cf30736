"""The embedded PIPO engine's control plane: requests, the paged KV pool, the pair-keyed prefix cache and the
continuous-batching scheduler. Pure Python (no torch): the model runner consumes `ScheduledBatch` and reports each
step back through `Scheduler.postprocess`. Every length is in PAIRS (one pair = two slots = one KV slot).
"""

from pipo_agent.backends.engine.block_manager import BlockManager
from pipo_agent.backends.engine.config import EngineConfig
from pipo_agent.backends.engine.errors import (
    ContextLengthError,
    EngineConfigError,
    EngineError,
    OutOfBlocksError,
    OutputSlotsError,
    ProtocolError,
    RequestError,
)
from pipo_agent.backends.engine.prefix_cache import (
    BlockKey,
    PrefixCache,
    PrefixCacheStats,
    block_key,
    seed_key,
)
from pipo_agent.backends.engine.scheduler import BatchKind, ScheduledBatch, Scheduler
from pipo_agent.backends.engine.sequence import PAIR, FinishReason, Sequence, SequenceStatus

__all__ = [
    "PAIR",
    "BatchKind",
    "BlockKey",
    "BlockManager",
    "ContextLengthError",
    "EngineConfig",
    "EngineConfigError",
    "EngineError",
    "FinishReason",
    "OutOfBlocksError",
    "OutputSlotsError",
    "PrefixCache",
    "PrefixCacheStats",
    "ProtocolError",
    "RequestError",
    "ScheduledBatch",
    "Scheduler",
    "Sequence",
    "SequenceStatus",
    "block_key",
    "seed_key",
]
