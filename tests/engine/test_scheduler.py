"""The scheduler driven by a scripted runner: no model; each sequence emits fixed tokens that depend only on its
id and its slot count, so a recomputed (preempted) request must produce exactly the same stream."""

import random
from collections import Counter

import pytest

import pipo_agent.backends.engine as engine
from pipo_agent.backends.engine import (
    BatchKind,
    ContextLengthError,
    EngineConfig,
    EngineConfigError,
    FinishReason,
    OutputSlotsError,
    ProtocolError,
    RequestError,
    ScheduledBatch,
    Scheduler,
    Sequence,
    SequenceStatus,
)

PAD = 0


def config(**overrides: int | bool) -> EngineConfig:
    fields: dict[str, int | bool] = {
        "block_size": 4,
        "num_blocks": 64,
        "max_num_seqs": 8,
        "max_num_batched_pairs": 64,
        "chunk_pairs": 32,
        "max_model_pairs": 128,
    }
    return EngineConfig(**{**fields, **overrides})


def make(seq_id: int, num_tokens: int, max_new_tokens: int = 10, tau: float = 0.5) -> Sequence:
    prompt = [1 + (seq_id * 13 + i) % 40 for i in range(num_tokens)]
    return Sequence(seq_id, prompt, pad_token_id=PAD, max_new_tokens=max_new_tokens, tau=tau)


def emit(seq: Sequence) -> tuple[list[int], bool]:
    """Scripted step output: drafts are rejected on every third step; the request stops at its budget."""
    k = seq.num_slots
    t1 = 50 + (seq.seq_id * 7 + k) % 40
    if seq.num_output_tokens + 1 == seq.max_new_tokens:
        return [t1], True
    t2 = PAD if k % 3 == 0 else 50 + (seq.seq_id * 5 + k) % 40
    return [t1, t2], seq.num_output_tokens + 1 + (t2 != PAD) == seq.max_new_tokens


def step(sched: Scheduler, batch: ScheduledBatch) -> None:
    for seq, last in zip(batch.seqs, batch.is_last_chunk, strict=True):
        slots, finished = emit(seq) if last else ([], False)
        sched.postprocess(seq, slots, finished)


def drain(sched: Scheduler, max_steps: int = 10_000) -> list[ScheduledBatch]:
    batches = []
    while (batch := sched.schedule()) is not None:
        step(sched, batch)
        batches.append(batch)
        assert len(batches) < max_steps
    return batches


def check_pool(sched: Scheduler) -> None:
    bm = sched.block_manager
    held = Counter(b for seq in sched.running for b in seq.block_table)
    assert all(bm.ref_count(b) == held[b] for b in range(bm.num_blocks))
    assert bm.num_free_blocks == bm.num_blocks - len(held)
    assert all(not seq.block_table for seq in sched.waiting)


def test_fifo_admission_up_to_max_num_seqs() -> None:
    sched = Scheduler(config(max_num_seqs=2))
    seqs = [make(i, 6, max_new_tokens=3) for i in range(3)]
    for seq in seqs:
        sched.add(seq)
    first = sched.schedule()
    assert first is not None and first.kind is BatchKind.PREFILL
    assert [s.seq_id for s in first.seqs] == [0, 1]
    assert seqs[2].status is SequenceStatus.WAITING
    step(sched, first)
    admitted_at: dict[int, int] = {}
    for index, batch in enumerate(drain(sched), start=1):
        for seq in batch.seqs:
            admitted_at.setdefault(seq.seq_id, index)
    assert admitted_at[2] > admitted_at[0]
    assert all(s.finish_reason is FinishReason.STOP and s.num_output_tokens == 3 for s in seqs)


def test_chunked_prefill_of_a_long_prompt() -> None:
    sched = Scheduler(config(chunk_pairs=8, max_num_batched_pairs=12))
    long, short = make(1, 41), make(2, 6)  # 41 tokens + PAD = 21 pairs; 3 pairs
    sched.add(long)
    sched.add(short)
    chunks = []
    while long.num_output_tokens == 0:
        batch = sched.schedule()
        assert batch is not None
        chunks.append(batch)
        step(sched, batch)
    first, second, third = chunks
    assert first.is_prefill and first.num_new_pairs == (8, 3) and first.cu_seqlens_q == (0, 8, 11)
    assert first.is_last_chunk == (False, True)
    assert first.next_token_ids == (long.token_ids[16], None)  # teacher-forces the MTP at pair 7
    assert first.context_lens == (8, 3) and first.positions == (*range(8), 0, 1, 2)
    assert first.logits_indices == (10,)
    table = first.block_tables[0]
    assert first.slot_mapping[:8] == tuple(table[j // 4] * 4 + j % 4 for j in range(8))
    assert first.input_ids[:16] == tuple(long.token_ids[:16])
    # The short one is decoding now, but the long prompt's prefill goes first.
    assert second.is_prefill and second.seqs == (long,) and second.num_new_pairs == (8,)
    assert second.positions == tuple(range(8, 16)) and second.cu_seqlens_k == (0, 16)
    assert second.slot_mapping == tuple(table[j // 4] * 4 + j % 4 for j in range(8, 16))
    assert second.next_token_ids == (long.token_ids[32],)
    assert third.num_new_pairs == (5,) and third.is_last_chunk == (True,) and third.context_lens == (21,)
    assert third.input_ids[-2:] == (long.token_ids[40], PAD)
    assert long.num_cached_pairs == 21 and long.num_pairs == 22
    decode = sched.schedule()
    assert decode is not None and decode.kind is BatchKind.DECODE
    assert decode.seqs == (long, short) and decode.cu_seqlens_q == (0, 1, 2)  # admission order


def test_a_chunk_short_of_the_last_pair_emits_nothing() -> None:
    sched = Scheduler(config(chunk_pairs=4, max_num_batched_pairs=8))
    seq = make(1, 20)
    sched.add(seq)
    batch = sched.schedule()
    assert batch is not None and batch.is_last_chunk == (False,)
    with pytest.raises(OutputSlotsError):
        sched.postprocess(seq, [50, 51], False)
    with pytest.raises(ProtocolError):
        sched.schedule()  # the batch is still in flight
    sched.postprocess(seq, [], False)
    with pytest.raises(ProtocolError):
        sched.postprocess(seq, [], False)  # nothing in flight


def test_decode_gives_every_running_sequence_one_pair() -> None:
    sched = Scheduler(config())
    seqs = [make(i, 4 + 3 * i) for i in range(3)]
    for seq in seqs:
        sched.add(seq)
    step(sched, sched.schedule() or pytest.fail())
    batch = sched.schedule()
    assert batch is not None and batch.kind is BatchKind.DECODE and batch.seqs == tuple(seqs)
    assert batch.num_new_pairs == (1, 1, 1) and batch.cu_seqlens_q == (0, 1, 2, 3)
    assert batch.context_lens == tuple(s.num_pairs for s in seqs)
    assert batch.positions == tuple(s.num_pairs - 1 for s in seqs)
    assert batch.input_ids == tuple(t for s in seqs for t in s.last_pair())
    bm = sched.block_manager
    assert batch.slot_mapping == tuple(bm.slot_mapping(s, s.num_pairs - 1, s.num_pairs)[0] for s in seqs)
    assert batch.logits_indices == (0, 1, 2)
    assert batch.next_token_ids == (None, None, None)


def test_preemption_recomputes_and_finishes_every_request() -> None:
    # 6 blocks of 4 pairs; 4 requests of 5 prompt pairs that grow by 12 pairs each: they cannot all fit.
    tight = Scheduler(config(num_blocks=6, max_model_pairs=24, max_num_batched_pairs=16, chunk_pairs=16))
    roomy = Scheduler(config())
    tight_seqs = [make(i, 10, max_new_tokens=20) for i in range(4)]
    roomy_seqs = [make(i, 10, max_new_tokens=20) for i in range(4)]
    for seq in tight_seqs:
        tight.add(seq)
    for seq in roomy_seqs:
        roomy.add(seq)
    preempted = []
    while (batch := tight.schedule()) is not None:
        if batch.is_prefill:
            # A preempted request comes back at the front of the queue, as a prefill of all its slots.
            preempted += [s for s in batch.seqs if s.output_slots and s.num_pending_pairs > 1]
        step(tight, batch)
        check_pool(tight)
    drain(roomy)
    assert tight.num_preemptions > 0 and preempted
    assert tight.num_unfinished == 0 and tight.block_manager.num_free_blocks == 6
    # The same scripted tokens with and without preemption: nothing dropped, duplicated or corrupted.
    for mine, reference in zip(tight_seqs, roomy_seqs, strict=True):
        assert mine.finish_reason is FinishReason.STOP and mine.block_table == []
        assert mine.token_ids == reference.token_ids and mine.num_output_tokens == 20


def test_the_most_recently_admitted_sequences_are_preempted_to_the_front() -> None:
    sched = Scheduler(config(num_blocks=3, max_model_pairs=12, max_num_batched_pairs=12, chunk_pairs=12))
    a, b, c = make(1, 8), make(2, 8), make(3, 2)  # 4, 4 and 1 prompt pairs: one block each
    for seq in (a, b, c):
        sched.add(seq)
    step(sched, sched.schedule() or pytest.fail())
    # a and b now need a second block and none is free: c (newest) goes for a, then b cannot append and
    # is the newest left, so it goes too. The queue keeps admission order: b before c.
    batch = sched.schedule()
    assert batch is not None and batch.kind is BatchKind.DECODE and batch.seqs == (a,)
    assert b.status is c.status is SequenceStatus.PREEMPTED and b.block_table == c.block_table == []
    assert list(sched.waiting) == [b, c] and sched.num_preemptions == 2
    step(sched, batch)
    drain(sched)
    assert all(s.finish_reason is FinishReason.STOP for s in (a, b, c))
    assert sched.block_manager.num_free_blocks == 3


def test_abort_frees_blocks_at_once() -> None:
    sched = Scheduler(config(num_blocks=8, max_model_pairs=32))
    a, b, c = make(1, 20), make(2, 20), make(3, 20)  # 10 pairs: 3 blocks each
    for seq in (a, b):
        sched.add(seq)
    batch = sched.schedule()
    assert batch is not None
    assert sched.block_manager.num_free_blocks == 8 - 2 * 3
    assert sched.abort(a.seq_id)  # cancelled while its step runs
    assert a.block_table == [] and a.finish_reason is FinishReason.ABORT
    assert sched.block_manager.num_free_blocks == 8 - 3
    assert sched.postprocess(a, [50, 51], False)  # the runner's late report is ignored
    sched.postprocess(b, *emit(b))
    sched.add(c)
    assert sched.abort(c.seq_id) and c.status is SequenceStatus.FINISHED  # aborted while waiting
    assert not sched.abort(c.seq_id) and not sched.abort(12345)
    assert sched.abort(b.seq_id)
    assert sched.num_unfinished == 0 and sched.schedule() is None
    assert sched.block_manager.num_free_blocks == 8


def test_context_limit() -> None:
    sched = Scheduler(config(max_model_pairs=8, num_blocks=4))
    with pytest.raises(ContextLengthError, match="max_model_pairs=8"):
        sched.add(make(1, 17))  # 9 pairs
    at_limit = make(2, 16)  # 8 pairs: the prefill fills the context, its one step is the last
    sched.add(at_limit)
    drain(sched)
    assert at_limit.finish_reason is FinishReason.LENGTH and at_limit.num_output_tokens == 2
    near = make(3, 12, max_new_tokens=100)  # 6 pairs: room for two decode steps
    sched.add(near)
    drain(sched)
    assert near.finish_reason is FinishReason.LENGTH and near.num_pairs == 9


def test_max_new_tokens_finishes_with_length() -> None:
    sched = Scheduler(config())
    seq = make(1, 4, max_new_tokens=4)
    sched.add(seq)
    while not seq.is_finished:
        batch = sched.schedule()
        assert batch is not None
        sched.postprocess(seq, [61, 62], False)  # a runner that never says stop
    assert seq.finish_reason is FinishReason.LENGTH and seq.num_output_tokens == 4


def test_add_rejects_bad_requests() -> None:
    sched = Scheduler(config())
    seq = make(1, 4)
    sched.add(seq)
    with pytest.raises(RequestError, match="already"):
        sched.add(make(1, 4))
    sched.abort(seq.seq_id)
    with pytest.raises(RequestError, match="not new"):
        sched.add(seq)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"block_size": 0}, r"block_size=0.*\[1, 1024\]"),
        ({"num_blocks": 1, "max_model_pairs": 64}, "num_blocks \\* block_size"),
        ({"max_num_seqs": 100}, "max_num_batched_pairs=64 < max_num_seqs=100"),
        ({"chunk_pairs": 65}, "chunk_pairs=65 > max_num_batched_pairs=64"),
        ({"max_num_seqs": True}, "max_num_seqs"),
        ({"typo": 1}, "typo"),
    ],
)
def test_config_errors_name_the_valid_range(overrides: dict[str, int], message: str) -> None:
    with pytest.raises(EngineConfigError, match=message):
        config(**overrides)


def test_config_is_frozen() -> None:
    cfg = config()
    with pytest.raises(Exception, match="frozen"):
        cfg.block_size = 8
    assert cfg.num_kv_slots == 64 * 4


def test_public_names() -> None:
    assert sorted(engine.__all__) == sorted(set(engine.__all__))
    for name in engine.__all__:
        assert getattr(engine, name) is not None


@pytest.mark.parametrize("seed", range(3))
def test_randomized_traffic_drops_nothing(seed: int) -> None:
    rng = random.Random(seed)
    sched = Scheduler(
        config(num_blocks=12, max_num_seqs=5, max_num_batched_pairs=10, chunk_pairs=6, max_model_pairs=40)
    )
    stems = [[rng.randrange(1, 40) for _ in range(rng.randrange(8, 40))] for _ in range(3)]
    added: list[Sequence] = []
    aborted: set[int] = set()
    for i in range(60):
        if rng.random() < 0.6:
            prompt = rng.choice(stems) + [rng.randrange(1, 40) for _ in range(rng.randrange(0, 12))]
            seq = Sequence(i, prompt, pad_token_id=PAD, max_new_tokens=rng.randrange(1, 30), tau=0.5)
            sched.add(seq)
            added.append(seq)
        if added and rng.random() < 0.1:
            victim = rng.choice(added)
            if sched.abort(victim.seq_id):
                aborted.add(victim.seq_id)
        batch = sched.schedule()
        if batch is not None:
            assert batch.num_pairs <= 10 and batch.num_seqs <= 5
            assert len(batch.slot_mapping) == batch.num_pairs == len(batch.input_ids) // 2
            assert len(set(batch.slot_mapping)) == batch.num_pairs  # no KV slot written twice
            step(sched, batch)
        check_pool(sched)
    drain(sched)
    check_pool(sched)
    assert sched.num_unfinished == 0 and sched.block_manager.num_free_blocks == 12
    for seq in added:
        assert seq.is_finished and seq.block_table == []
        if seq.seq_id in aborted:
            assert seq.finish_reason is FinishReason.ABORT
        elif seq.num_pairs > 40:
            assert seq.finish_reason is FinishReason.LENGTH
        else:
            assert seq.finish_reason is FinishReason.STOP
            assert seq.num_output_tokens == seq.max_new_tokens
