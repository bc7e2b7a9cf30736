"""A request's state in the engine, at pair granularity.

`token_ids` is the request's slot stream: the prompt, padded to even length with one PAD (Part B §2.2), then the
output slots, two per step `(t1, t2-or-PAD)`, or `(t1,)` on a final step that ends at token1. Pair `j` is slots
`(2j, 2j+1)`: one backbone position and one KV slot in the backbone's full-attention layers and, at the SAME slot
index, one in the MTP layer (Part B §4.5), so one block table serves both.

Counters, in pairs unless named otherwise:
  num_pairs            ceil(len(token_ids) / 2); while the request runs, the last pair is the one its latest step
                       fed back, and its KV is not computed yet
  num_cached_pairs     pairs whose KV is in the cache (computed, or reused from the prefix cache)
  num_scheduled_pairs  pairs of the step in flight (0 between steps)
  num_output_tokens    real output tokens (PAD excluded): the unit of `max_new_tokens` (Part A §A4)

An AR sequence (`width=1`, the baseline the engine also serves) has one token per position: the same
bookkeeping with "pair" read as "position", no prompt padding, one slot per step and no MTP.

The block manager owns `block_table` and resets `num_cached_pairs`; the scheduler owns the rest.
"""

import math
from collections.abc import Iterable
from collections.abc import Sequence as SequenceOf
from enum import Enum, StrEnum, auto

from pipo_agent.backends.engine.errors import OutputSlotsError, RequestError

# Tokens folded into one backbone position; the same constant as `pipo_agent.backends.model.constants.PAIR`,
# restated here so the control plane does not import the model package (and torch).
PAIR = 2

# Token ids are packed as 64-bit integers in prefix-cache keys.
MAX_TOKEN_ID = 2**63 - 1


class SequenceStatus(Enum):
    WAITING = auto()  # added, never admitted
    RUNNING = auto()  # holds KV blocks; prefilling or decoding
    PREEMPTED = auto()  # its blocks were taken back; waits to be recomputed from all its slots
    FINISHED = auto()


class FinishReason(StrEnum):
    STOP = "stop"  # the runner reported the end (EOS, a stop string, or its own length check)
    LENGTH = (
        "length"  # the engine's limits: `max_new_tokens` real tokens, or no context left for another pair
    )
    ABORT = "abort"  # cancelled


class Sequence:
    """One request: its slot stream, KV bookkeeping and per-request options (`tau`, opaque sampling params)."""

    def __init__(
        self,
        seq_id: int,
        prompt_ids: Iterable[int],
        *,
        pad_token_id: int,
        max_new_tokens: int,
        tau: float,
        sampling_params: object = None,
        width: int = PAIR,
    ) -> None:
        prompt = list(prompt_ids)
        if width not in (1, PAIR):
            raise RequestError(f"sequence {seq_id}: width={width}; valid: 2 (PIPO pairs) or 1 (AR tokens)")
        if not prompt:
            raise RequestError(f"sequence {seq_id}: the prompt is empty")
        bad = [t for t in prompt if not 0 <= t <= MAX_TOKEN_ID]
        if bad or not 0 <= pad_token_id <= MAX_TOKEN_ID:
            raise RequestError(
                f"sequence {seq_id}: token ids must be ints in [0, {MAX_TOKEN_ID}]; "
                f"got prompt ids {bad[:5]} and pad_token_id {pad_token_id}"
            )
        if max_new_tokens < 1:
            raise RequestError(f"sequence {seq_id}: max_new_tokens={max_new_tokens}; valid: an int >= 1")
        if not math.isfinite(tau):
            raise RequestError(f"sequence {seq_id}: tau={tau}; valid: a finite float")
        self.seq_id = seq_id
        self.pad_token_id = pad_token_id
        self.max_new_tokens = max_new_tokens
        self.tau = tau
        self.sampling_params = sampling_params
        self.width = width
        self.num_prompt_tokens = len(prompt)
        if len(prompt) % width:
            prompt.append(pad_token_id)
        self.num_prompt_slots = len(prompt)
        self.token_ids: list[int] = prompt
        self.status = SequenceStatus.WAITING
        self.finish_reason: FinishReason | None = None
        self.block_table: list[int] = []
        self.num_cached_pairs = 0
        self.num_scheduled_pairs = 0
        self.num_output_tokens = 0

    def __repr__(self) -> str:
        return (
            f"Sequence(seq_id={self.seq_id}, status={self.status.name}, slots={self.num_slots}, "
            f"cached_pairs={self.num_cached_pairs}, blocks={self.block_table})"
        )

    @property
    def num_slots(self) -> int:
        return len(self.token_ids)

    @property
    def num_pairs(self) -> int:
        return -(-len(self.token_ids) // self.width)

    @property
    def num_prompt_pairs(self) -> int:
        return self.num_prompt_slots // self.width

    @property
    def num_pending_pairs(self) -> int:
        """Pairs whose KV is still to be computed (1 for a decoding sequence)."""
        return self.num_pairs - self.num_cached_pairs

    @property
    def prompt_token_ids(self) -> list[int]:
        """The padded prompt."""
        return self.token_ids[: self.num_prompt_slots]

    @property
    def output_slots(self) -> list[int]:
        """Every emitted slot, PADs included."""
        return self.token_ids[self.num_prompt_slots :]

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    @property
    def writes_mtp_kv(self) -> bool:
        """Whether its steps write the MTP layer's KV: `tau >= 1` skips phase 2 (Part A §A1); AR has no MTP."""
        return self.width == PAIR and self.tau < 1.0

    def pair_ids(self, j: int) -> tuple[int, int]:
        """Pair `j` as `(slot 2j, slot 2j+1)`; a lone final token1 reads as `(t1, PAD)` (Part B §2.2 rule 3)."""
        if not 0 <= j < self.num_pairs:
            raise IndexError(f"pair {j} out of range for a sequence of {self.num_pairs} pairs")
        if self.width != PAIR:
            raise RequestError(f"sequence {self.seq_id} is an AR sequence: its positions are single tokens")
        first = self.token_ids[PAIR * j]
        second = self.token_ids[PAIR * j + 1] if PAIR * j + 1 < len(self.token_ids) else self.pad_token_id
        return first, second

    def last_pair(self) -> tuple[int, int]:
        return self.pair_ids(self.num_pairs - 1)

    def slot_ids(self, start_pair: int, end_pair: int) -> list[int]:
        """The `2 * (end_pair - start_pair)` slots of pairs `[start_pair, end_pair)`: a step's input ids."""
        if not 0 <= start_pair <= end_pair <= self.num_pairs:
            raise IndexError(f"pairs [{start_pair}, {end_pair}) out of range for {self.num_pairs} pairs")
        slots = self.token_ids[self.width * start_pair : self.width * end_pair]
        if len(slots) % self.width:
            slots.append(self.pad_token_id)
        return slots

    def append_slots(self, slots: SequenceOf[int], *, final: bool) -> None:
        """Appends one step's output: `(t1, t2-or-PAD)`, or `(t1,)` when the step ends the request."""
        if self.is_finished or len(self.token_ids) % self.width:
            raise OutputSlotsError(f"sequence {self.seq_id} is finished; it takes no more slots")
        if self.width == 1 and len(slots) != 1:
            raise OutputSlotsError(f"AR sequence {self.seq_id}: a step emits one token; got {list(slots)}")
        if len(slots) not in (1, PAIR) or (len(slots) == 1 and not final and self.width == PAIR):
            raise OutputSlotsError(
                f"sequence {self.seq_id}: a step emits (t1, t2-or-PAD), or (t1,) on its final step; "
                f"got {list(slots)} with final={final}"
            )
        if slots[0] == self.pad_token_id or not all(0 <= t <= MAX_TOKEN_ID for t in slots):
            raise OutputSlotsError(
                f"sequence {self.seq_id}: token1 is never PAD and ids are in [0, {MAX_TOKEN_ID}]; got {list(slots)}"
            )
        num_real = sum(1 for t in slots if t != self.pad_token_id)
        if self.num_output_tokens + num_real > self.max_new_tokens:
            raise OutputSlotsError(
                f"sequence {self.seq_id}: {list(slots)} brings {self.num_output_tokens + num_real} real tokens, "
                f"over max_new_tokens={self.max_new_tokens}; emit (t1,) and finish instead"
            )
        self.token_ids.extend(slots)
        self.num_output_tokens += num_real
