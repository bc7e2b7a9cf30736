"""Errors of the engine's control plane (config, sequence, block manager, prefix cache, scheduler).

All of them are misuse, raised before any state changes. Running out of KV blocks is not an error at run time:
the scheduler waits or preempts (and recomputes later) instead.

EngineError
├── EngineConfigError       a config field is out of range or inconsistent; the message names each field and
│                           its valid range
├── RequestError            a request cannot be accepted: empty prompt, token id out of range, max_new_tokens < 1,
│   │                       a non-finite tau, a seq_id already held, a sequence that is not new
│   └── ContextLengthError  the padded prompt holds more pairs than `max_model_pairs`
├── OutputSlotsError        a step's emitted slots break pairing: not 1 or 2 slots, PAD as token1, a lone token1
│                           on a step that does not finish, slots from a step that emits none, or more real
│                           tokens than `max_new_tokens`
├── ProtocolError           a call out of order: `schedule()` while a batch is in flight, `postprocess()` of a
│                           sequence with no step in flight, a slot range outside a sequence's blocks
└── OutOfBlocksError        `allocate()`/`append_slot()` without room; callers check `can_allocate()`/`can_append()`
"""


class EngineError(Exception):
    """Base class of the engine's errors."""


class EngineConfigError(EngineError, ValueError):
    """Invalid engine configuration; the message names each bad field and its valid range."""


class RequestError(EngineError, ValueError):
    """The request cannot be accepted; the message says why."""


class ContextLengthError(RequestError):
    """The padded prompt is longer than `max_model_pairs` pairs."""


class OutputSlotsError(EngineError, ValueError):
    """The slots a step emitted do not fit the sequence's pairing or its token budget."""


class ProtocolError(EngineError, RuntimeError):
    """A control-plane call made out of order."""


class OutOfBlocksError(EngineError, RuntimeError):
    """No free KV block for `allocate()` or `append_slot()`; check `can_allocate()`/`can_append()` first."""
