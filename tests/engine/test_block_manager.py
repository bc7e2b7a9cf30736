import random
from collections import Counter

import pytest

from pipo_agent.backends.engine import BlockManager, OutOfBlocksError, ProtocolError, Sequence

PAD = 0
BS = 4  # pairs per block


def make(seq_id: int, prompt: list[int], tau: float = 0.5) -> Sequence:
    return Sequence(seq_id, prompt, pad_token_id=PAD, max_new_tokens=10_000, tau=tau)


def compute(bm: BlockManager, seq: Sequence, slots: tuple[int, ...] = (21, 22)) -> None:
    """What one model step does to the bookkeeping: every pending pair gets its KV, then a pair is emitted."""
    seq.num_cached_pairs = seq.num_pairs
    seq.append_slots(slots, final=False)
    bm.cache_full_blocks(seq)


def decode(bm: BlockManager, seq: Sequence, slots: tuple[int, ...] = (21, 22)) -> None:
    bm.append_slot(seq)
    compute(bm, seq, slots)


def check_invariants(bm: BlockManager, live: list[Sequence]) -> None:
    """Ref counts equal table occurrences; unheld blocks are exactly the free ones; a block in several tables is
    a shared prefix block: at the same index of each table, holding the same slots."""
    held = Counter(b for seq in live for b in seq.block_table)
    for block_id in range(bm.num_blocks):
        assert bm.ref_count(block_id) == held[block_id]
    assert bm.num_free_blocks == bm.num_blocks - len(held)
    for seq in live:
        assert len(set(seq.block_table)) == len(seq.block_table)
        # Between steps the pair just fed back may still lack its block (`append_slot` adds it).
        assert (
            bm.num_blocks_for(seq.num_pairs - 1) <= len(seq.block_table) <= bm.num_blocks_for(seq.num_pairs)
        )
    holders: dict[int, list[tuple[Sequence, int]]] = {}
    for seq in live:
        for i, block_id in enumerate(seq.block_table):
            holders.setdefault(block_id, []).append((seq, i))
    for block_id, where in holders.items():
        if len(where) > 1:
            indexes = {i for _, i in where}
            assert len(indexes) == 1, f"block {block_id} at different table indexes"
            (i,) = indexes
            spans = {tuple(seq.token_ids[: (i + 1) * BS * 2 + 1]) for seq, _ in where}
            assert len(spans) == 1, f"block {block_id} shared by different streams"
            assert all(seq.num_cached_pairs >= (i + 1) * BS for seq, _ in where)


def test_allocate_maps_pairs_to_slots() -> None:
    bm = BlockManager(8, BS)
    seq = make(1, list(range(1, 20)))  # 19 tokens -> 20 slots -> 10 pairs -> 3 blocks
    assert bm.can_allocate(seq)
    bm.allocate(seq)
    assert len(seq.block_table) == 3 and seq.num_cached_pairs == 0
    assert bm.num_free_blocks == 5
    b0, b1, b2 = seq.block_table
    expected = [b0 * BS + j for j in range(4)] + [b1 * BS + j for j in range(4)] + [b2 * BS, b2 * BS + 1]
    assert bm.slot_mapping(seq, 0, 10) == expected
    assert bm.slot_mapping(seq, 5, 6) == [b1 * BS + 1]
    with pytest.raises(ProtocolError):
        bm.slot_mapping(seq, 10, 13)
    with pytest.raises(ProtocolError):
        bm.allocate(seq)  # already holds blocks


def test_append_takes_a_block_only_when_the_last_is_full() -> None:
    bm = BlockManager(3, BS)
    seq = make(1, list(range(1, 7)))  # 3 pairs
    bm.allocate(seq)
    compute(bm, seq)  # 4 pairs: the 4th still fits block 0
    assert bm.can_append(seq)
    bm.append_slot(seq)
    assert len(seq.block_table) == 1
    compute(bm, seq)  # 5 pairs: pair 4 needs block 1
    bm.append_slot(seq)
    assert len(seq.block_table) == 2 and bm.num_free_blocks == 1
    assert bm.slot_mapping(seq, 4, 5) == [seq.block_table[1] * BS]


def test_exhausted_pool_refuses_and_raises() -> None:
    bm = BlockManager(2, BS, enable_prefix_caching=False)
    a = make(1, list(range(1, 9)))  # 4 pairs: one full block
    bm.allocate(a)
    b = make(2, list(range(1, 9)))
    bm.allocate(b)
    c = make(3, [1, 2])
    assert not bm.can_allocate(c)
    with pytest.raises(OutOfBlocksError):
        bm.allocate(c)
    compute(bm, a)  # pair 4 needs a second block
    assert not bm.can_append(a)
    with pytest.raises(OutOfBlocksError):
        bm.append_slot(a)
    bm.free(b)
    assert bm.can_append(a)
    bm.append_slot(a)
    check_invariants(bm, [a])


def test_free_returns_every_block() -> None:
    bm = BlockManager(6, BS)
    seqs = [make(i, list(range(1, 4 + 5 * i))) for i in range(3)]
    for seq in seqs:
        bm.allocate(seq)
        compute(bm, seq)
    check_invariants(bm, seqs)
    for seq in seqs:
        bm.free(seq)
        assert seq.block_table == [] and seq.num_cached_pairs == 0
    assert bm.num_free_blocks == bm.num_blocks
    assert all(bm.ref_count(b) == 0 for b in range(bm.num_blocks))


@pytest.mark.parametrize("seed", range(4))
def test_randomized_allocate_decode_free_keeps_the_invariants(seed: int) -> None:
    rng = random.Random(seed)
    bm = BlockManager(24, BS, enable_prefix_caching=seed % 2 == 0)
    # Prompts from a few shared stems, so prefix blocks are shared and evicted as well.
    stems = [[rng.randrange(1, 9) for _ in range(rng.randrange(8, 30))] for _ in range(3)]
    live: list[Sequence] = []
    finished: list[Sequence] = []
    for step in range(400):
        action = rng.random()
        if action < 0.25:
            seq = make(step, rng.choice(stems) + [rng.randrange(1, 9) for _ in range(rng.randrange(0, 9))])
            if bm.can_allocate(seq):
                bm.allocate(seq)
                assert seq.num_cached_pairs % BS == 0 and seq.num_cached_pairs < seq.num_pairs
                compute(bm, seq, (rng.randrange(1, 9), rng.choice([PAD, 3])))
                live.append(seq)
        elif action < 0.35 and live:
            seq = live.pop(rng.randrange(len(live)))
            bm.free(seq)
            finished.append(seq)
        elif live:
            seq = rng.choice(live)
            if bm.can_append(seq):
                decode(bm, seq, (rng.randrange(1, 9), rng.choice([PAD, 3])))
        check_invariants(bm, live)
    for seq in live:
        bm.free(seq)
    check_invariants(bm, [])
    assert bm.num_free_blocks == bm.num_blocks
    if bm.prefix_cache is not None:
        assert bm.prefix_cache.stats.num_hit_pairs > 0  # the stems were shared
