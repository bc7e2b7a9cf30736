"""Continuous batching over pairs: admission, chunked prefill, decode, preemption, cancellation.

Each `schedule()` returns one step, either
  PREFILL  sequences with more than one pair to compute: running ones whose prompt is part-done first, then
           waiting ones admitted FIFO while `max_num_seqs`, the KV pool and the step's `max_num_batched_pairs`
           allow (no skipping: the head of the queue blocks those behind it). Each gets a chunk of at most
           `chunk_pairs` pairs; chunks end on pair boundaries by construction.
  DECODE   otherwise, one pair per running sequence: the pair its previous step fed back. (A prompt whose
           final chunk would be a single pair gets it here: one pair with its context cached is a decode step.)
Prefill goes first, so decoding pauses for as many steps as a long prompt has chunks.
A sequence that cannot get a block for its decode pair makes room by preempting the most recently admitted
sequence (possibly itself): its blocks are freed (full ones stay in the prefix cache), it goes PREEMPTED to the
FRONT of the queue, and on readmission it is prefilled again from all its slots, prompt and output alike, which
reproduces the step it lost. A lone sequence always fits (`EngineConfig` checks the pool against
`max_model_pairs`), so every request finishes and none is dropped.

Protocol: `schedule()`, run the model on the batch, then `postprocess()` each of its sequences; only then
`schedule()` again. `abort()` may come at any point and frees the blocks at once.
"""

from collections import deque
from collections.abc import Sequence as SequenceOf
from dataclasses import dataclass
from enum import Enum, auto
from itertools import accumulate

from pipo_agent.backends.engine.block_manager import BlockManager
from pipo_agent.backends.engine.config import EngineConfig
from pipo_agent.backends.engine.errors import (
    ContextLengthError,
    OutputSlotsError,
    ProtocolError,
    RequestError,
)
from pipo_agent.backends.engine.sequence import PAIR, FinishReason, Sequence, SequenceStatus


class BatchKind(Enum):
    PREFILL = auto()
    DECODE = auto()


@dataclass(frozen=True)
class ScheduledBatch:
    """One step's work, in the flash-attn varlen vocabulary; every length is in pairs. Fixed at schedule time."""

    kind: BatchKind
    seqs: tuple[Sequence, ...]
    num_new_pairs: tuple[int, ...]  # pairs computed for each sequence this step
    cu_seqlens_q: tuple[int, ...]  # [0, n_0, n_0 + n_1, ...]
    context_lens: tuple[int, ...]  # pairs in each sequence's cache once this step has written its pairs
    slot_mapping: tuple[int, ...]  # physical KV slot of every new pair, in batch order
    block_tables: tuple[tuple[int, ...], ...]
    input_ids: tuple[int, ...]  # the new pairs' slots, two per pair, in batch order
    is_last_chunk: tuple[bool, ...]  # the step reaches the sequence's last pair, so it samples (t1, t2) there
    # The slot after a chunk that is not the last: the MTP layer at the chunk's last pair j is teacher-forced
    # with it (x_{2j+2}, Part A §A4), as prefix-cache keys assume. None where token1 is sampled instead.
    next_token_ids: tuple[int | None, ...]

    @property
    def is_prefill(self) -> bool:
        return self.kind is BatchKind.PREFILL

    @property
    def num_seqs(self) -> int:
        return len(self.num_new_pairs)

    @property
    def num_pairs(self) -> int:
        return self.cu_seqlens_q[-1]

    @property
    def cu_seqlens_k(self) -> tuple[int, ...]:
        return (0, *accumulate(self.context_lens))

    @property
    def positions(self) -> tuple[int, ...]:
        """RoPE position of every new pair: pair j sits at position j (Part B §8 item 4)."""
        return tuple(
            p for n, k in zip(self.num_new_pairs, self.context_lens, strict=True) for p in range(k - n, k)
        )

    @property
    def logits_indices(self) -> tuple[int, ...]:
        """Indices, among the new pairs, of the pairs whose hidden states are sampled."""
        return tuple(
            end - 1 for end, last in zip(self.cu_seqlens_q[1:], self.is_last_chunk, strict=True) if last
        )


class Scheduler:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.block_manager = BlockManager(
            config.num_blocks, config.block_size, enable_prefix_caching=config.enable_prefix_caching
        )
        self.waiting: deque[Sequence] = deque()  # WAITING and PREEMPTED, in admission order
        self.running: list[Sequence] = []  # in admission order; preemption takes the last
        self.num_preemptions = 0
        self._seqs: dict[int, Sequence] = {}  # every unfinished sequence by id
        self._num_in_flight = 0

    @property
    def num_unfinished(self) -> int:
        return len(self._seqs)

    def add(self, seq: Sequence) -> None:
        if seq.status is not SequenceStatus.WAITING or seq.output_slots or seq.block_table:
            raise RequestError(f"sequence {seq.seq_id} is not new (status {seq.status.name})")
        if seq.seq_id in self._seqs:
            raise RequestError(f"sequence id {seq.seq_id} is already in the engine")
        if seq.num_prompt_pairs > self.config.max_model_pairs:
            raise ContextLengthError(
                f"sequence {seq.seq_id}: the prompt of {seq.num_prompt_tokens} tokens pads to "
                f"{seq.num_prompt_pairs} pairs, over max_model_pairs={self.config.max_model_pairs} "
                f"(at most {2 * self.config.max_model_pairs} prompt tokens)"
            )
        self._seqs[seq.seq_id] = seq
        self.waiting.append(seq)

    def schedule(self) -> ScheduledBatch | None:
        """The next step; None when no sequence is unfinished."""
        if self._num_in_flight:
            raise ProtocolError(f"{self._num_in_flight} sequences of the previous batch await postprocess()")
        if not self._seqs:
            return None
        batch = self._schedule_prefill() or self._schedule_decode() or self._schedule_prefill()
        assert batch is not None, "a lone sequence always fits the pool"
        return batch

    def postprocess(self, seq: Sequence, emitted_slots: SequenceOf[int], finished: bool) -> bool:
        """Records `seq`'s step: the pairs it computed and the slots it emitted (none for a prompt chunk that
        does not reach the last pair). Returns whether `seq` is finished; finished sequences free their blocks,
        which stay in the prefix cache."""
        if seq.finish_reason is FinishReason.ABORT:
            return True  # aborted while its step ran
        if seq.num_scheduled_pairs == 0:
            raise ProtocolError(f"sequence {seq.seq_id} has no step in flight")
        reaches_last = seq.num_cached_pairs + seq.num_scheduled_pairs == seq.num_pairs
        if not reaches_last and (emitted_slots or finished):
            raise OutputSlotsError(
                f"sequence {seq.seq_id}: a prompt chunk short of the last pair emits nothing and cannot finish"
            )
        if reaches_last:
            seq.append_slots(emitted_slots, final=finished)  # validates before any state changes
        seq.num_cached_pairs += seq.num_scheduled_pairs
        seq.num_scheduled_pairs = 0
        self._num_in_flight -= 1
        self.block_manager.cache_full_blocks(seq)
        if finished:
            self._finish(seq, FinishReason.STOP)
        elif seq.num_output_tokens >= seq.max_new_tokens or seq.num_pairs > self.config.max_model_pairs:
            self._finish(seq, FinishReason.LENGTH)
        return seq.status is SequenceStatus.FINISHED

    def abort(self, seq_id: int) -> bool:
        """Cancels a request and frees its blocks now; False when no unfinished request has this id."""
        seq = self._seqs.get(seq_id)
        if seq is None:
            return False
        if seq.num_scheduled_pairs:
            seq.num_scheduled_pairs = 0
            self._num_in_flight -= 1
        if seq in self.waiting:
            self.waiting.remove(seq)
            self._mark_finished(seq, FinishReason.ABORT)
        else:
            self._finish(seq, FinishReason.ABORT)
        return True

    def _schedule_prefill(self) -> ScheduledBatch | None:
        budget = self.config.max_num_batched_pairs
        seqs: list[Sequence] = []
        counts: list[int] = []
        for seq in self.running:
            if seq.num_pending_pairs > 1 and budget > 0:
                seqs.append(seq)
                counts.append(min(seq.num_pending_pairs, self.config.chunk_pairs, budget))
                budget -= counts[-1]
        while self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting[0]
            if not self.block_manager.can_allocate(seq):
                break
            self.waiting.popleft()
            self.block_manager.allocate(seq)
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            seqs.append(seq)
            counts.append(min(seq.num_pending_pairs, self.config.chunk_pairs, budget))
            budget -= counts[-1]
        return self._build(BatchKind.PREFILL, seqs, counts) if seqs else None

    def _schedule_decode(self) -> ScheduledBatch | None:
        seqs: list[Sequence] = []
        i = 0
        while i < len(self.running):
            seq = self.running[i]
            assert seq.num_pending_pairs == 1, "sequences mid-prefill are scheduled first"
            while not self.block_manager.can_append(seq) and self.running[-1] is not seq:
                self._preempt(self.running[-1])
            if self.block_manager.can_append(seq):
                self.block_manager.append_slot(seq)
                seqs.append(seq)
                i += 1
            else:
                self._preempt(seq)  # the last one left
        return self._build(BatchKind.DECODE, seqs, [1] * len(seqs)) if seqs else None

    def _build(self, kind: BatchKind, seqs: list[Sequence], counts: list[int]) -> ScheduledBatch:
        slot_mapping: list[int] = []
        input_ids: list[int] = []
        context_lens: list[int] = []
        for seq, n in zip(seqs, counts, strict=True):
            start, end = seq.num_cached_pairs, seq.num_cached_pairs + n
            slot_mapping += self.block_manager.slot_mapping(seq, start, end)
            input_ids += seq.slot_ids(start, end)
            context_lens.append(end)
            seq.num_scheduled_pairs = n
        self._num_in_flight = len(seqs)
        return ScheduledBatch(
            kind=kind,
            seqs=tuple(seqs),
            num_new_pairs=tuple(counts),
            cu_seqlens_q=(0, *accumulate(counts)),
            context_lens=tuple(context_lens),
            slot_mapping=tuple(slot_mapping),
            block_tables=tuple(tuple(seq.block_table) for seq in seqs),
            input_ids=tuple(input_ids),
            is_last_chunk=tuple(end == seq.num_pairs for seq, end in zip(seqs, context_lens, strict=True)),
            next_token_ids=tuple(
                None if end == seq.num_pairs or not seq.writes_mtp_kv else seq.token_ids[PAIR * end]
                for seq, end in zip(seqs, context_lens, strict=True)
            ),
        )

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.block_manager.free(seq)
        seq.status = SequenceStatus.PREEMPTED
        self.waiting.appendleft(seq)
        self.num_preemptions += 1

    def _finish(self, seq: Sequence, reason: FinishReason) -> None:
        self.running.remove(seq)
        self.block_manager.free(seq)
        self._mark_finished(seq, reason)

    def _mark_finished(self, seq: Sequence, reason: FinishReason) -> None:
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason
        del self._seqs[seq.seq_id]
