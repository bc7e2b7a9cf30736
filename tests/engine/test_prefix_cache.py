"""The pair-keyed prefix cache, through the block manager that uses it (block_size 4 pairs = 8 slots)."""

from pipo_agent.backends.engine import BlockManager, PrefixCache, Sequence, block_key, seed_key

PAD = 0
BS = 4


def make(seq_id: int, prompt: list[int], tau: float = 0.5) -> Sequence:
    return Sequence(seq_id, prompt, pad_token_id=PAD, max_new_tokens=10_000, tau=tau)


def run(bm: BlockManager, seq: Sequence, steps: int) -> None:
    """Admit `seq`, then run `steps` model steps (the prefill included); each emits one pair."""
    bm.allocate(seq)
    for step in range(steps):
        if step:
            bm.append_slot(seq)
        seq.num_cached_pairs = seq.num_pairs
        seq.append_slots((30 + step, PAD if step % 2 else 40 + step), final=False)
        bm.cache_full_blocks(seq)


def test_keys_chain_over_pairs_and_lookahead() -> None:
    root = seed_key(True)
    block = list(range(1, 10))  # 4 pairs + the lookahead slot
    assert block_key(root, block) == block_key(root, list(block))
    assert block_key(root, block) != block_key(seed_key(False), block)
    assert block_key(root, block) != block_key(block_key(root, block), block)
    assert block_key(root, block) != block_key(root, [*block[:-1], 99])  # lookahead slot differs


def test_second_turn_reuses_the_first_turns_full_blocks() -> None:
    bm = BlockManager(16, BS)
    first = make(1, list(range(1, 20)))  # 19 tokens + PAD = 10 pairs
    run(bm, first, steps=5)  # 15 pairs in the stream; 14 computed
    assert first.num_cached_pairs == 14
    first_blocks = list(first.block_table)
    bm.free(first)
    assert bm.num_evictable_blocks == 3  # blocks 0-2 are full and computed; block 3 is partial
    assert bm.num_free_blocks == bm.num_blocks

    # The agent sends back the whole slot stream, PADs included, and the new user turn.
    second = make(2, [*first.token_ids, 7, 8, 9, 10, 11])
    bm.allocate(second)
    assert second.num_cached_pairs == 3 * BS  # hit pairs = the full blocks of the shared prefix
    assert second.block_table[:3] == first_blocks[:3]
    assert bm.num_evictable_blocks == 0
    stats = bm.prefix_cache.stats if bm.prefix_cache else None
    assert stats is not None
    assert (stats.num_queries, stats.num_hit_pairs) == (2, 12)
    assert stats.num_query_pairs == first.num_prompt_pairs + second.num_pairs
    assert stats.hit_rate == 12 / (10 + second.num_pairs)


def test_a_one_slot_shift_breaks_sharing() -> None:
    bm = BlockManager(16, BS)
    first = make(1, list(range(1, 33)))  # 16 pairs
    run(bm, first, steps=1)
    bm.free(first)
    assert bm.num_evictable_blocks == 4
    shifted = make(2, [99, *first.token_ids])  # the same slots, paired one slot later
    bm.allocate(shifted)
    assert shifted.num_cached_pairs == 0


def test_the_pads_are_part_of_the_stream() -> None:
    bm = BlockManager(16, BS)
    first = make(1, list(range(1, 14)))  # 13 tokens: the PAD is slot 13, in block 1
    run(bm, first, steps=6)  # 13 pairs, 12 computed: blocks 0-2 keyed
    bm.free(first)
    verbatim = make(2, [*first.token_ids, 5, 6])
    bm.allocate(verbatim)
    assert verbatim.num_cached_pairs == 3 * BS
    bm.free(verbatim)
    # A client that re-tokenized the history without the PAD re-pairs everything after slot 12.
    repaired = make(3, [t for t in first.token_ids if t != PAD] + [5, 6])
    assert repaired.token_ids[:13] == first.token_ids[:13]
    bm.allocate(repaired)
    assert repaired.num_cached_pairs == BS


def test_divergence_right_after_a_block_misses_that_block() -> None:
    bm = BlockManager(16, BS)
    first = make(1, list(range(1, 25)))  # 12 pairs = 3 full blocks
    run(bm, first, steps=1)
    bm.free(first)
    # Same first 16 slots (2 blocks), then a different slot 16: block 1's lookahead differs (its last MTP
    # entry was computed from slot 16), so only block 0 is reused.
    other = make(2, [*first.token_ids[:16], 77, *first.token_ids[17:]])
    bm.allocate(other)
    assert other.num_cached_pairs == BS


def test_the_last_pair_is_always_computed() -> None:
    bm = BlockManager(16, BS)
    first = make(1, list(range(1, 17)))  # exactly 2 blocks
    run(bm, first, steps=2)
    bm.free(first)
    again = make(2, first.token_ids[:16])  # the same prompt: its last pair must produce logits again
    bm.allocate(again)
    assert again.num_cached_pairs == BS


def test_partial_blocks_and_other_namespaces_are_not_shared() -> None:
    bm = BlockManager(16, BS)
    first = make(1, list(range(1, 13)))  # 6 pairs: block 1 is partial
    run(bm, first, steps=1)
    assert bm.prefix_cache is not None and bm.prefix_cache.num_cached_blocks == 1
    bm.free(first)
    no_mtp = make(2, [*first.token_ids, 5, 6], tau=1.0)  # tau >= 1 blocks hold no MTP entries
    bm.allocate(no_mtp)
    assert no_mtp.num_cached_pairs == 0


def test_lru_eviction_when_the_pool_is_short() -> None:
    bm = BlockManager(6, BS)
    a = make(1, list(range(1, 25)))  # 12 pairs: 3 blocks
    run(bm, a, steps=1)  # 12 pairs computed, and the lookahead of block 2 is the emitted token1
    b = make(2, list(range(101, 117)))  # 8 pairs: 2 blocks
    run(bm, b, steps=1)
    bm.free(a)  # a's blocks become evictable first: they are the least recently used
    bm.free(b)
    assert bm.num_evictable_blocks == 5 and bm.num_free_blocks == 6

    big = make(3, list(range(201, 225)))  # 3 new blocks: the 1 free one, then 2 evicted
    bm.allocate(big)
    assert bm.num_evictable_blocks == 3
    bm.free(big)  # never computed: its blocks return unkeyed
    # a was parked tail first, so its two tail blocks went; its head block and both of b's survive.
    a_again = make(4, [*a.token_ids, 1, 2])
    bm.allocate(a_again)
    assert a_again.num_cached_pairs == BS
    bm.free(a_again)
    b_again = make(5, [*b.token_ids, 1, 2])
    bm.allocate(b_again)
    assert b_again.num_cached_pairs == 2 * BS


def test_reusing_a_cached_block_counts_against_new_blocks() -> None:
    bm = BlockManager(5, BS)
    a = make(1, list(range(1, 25)))  # 3 blocks
    run(bm, a, steps=1)
    bm.free(a)
    assert bm.num_free_blocks == 5 and bm.num_evictable_blocks == 3
    # 3 hits + 3 new blocks: 3 new <= 5 unheld blocks, but the hits are 3 of those 5.
    longer = make(2, a.token_ids + list(range(1, 19)))
    assert bm.num_blocks_for(longer.num_pairs) == 6
    assert not bm.can_allocate(longer)
    fits = make(3, a.token_ids + list(range(1, 11)))  # 3 hits + 2 new
    assert bm.can_allocate(fits)
    bm.allocate(fits)
    assert fits.num_cached_pairs == 3 * BS and bm.num_free_blocks == 0


def test_concurrent_duplicates_keep_one_cached_copy() -> None:
    bm = BlockManager(8, BS)
    a = make(1, list(range(1, 17)))
    b = make(2, list(range(1, 17)))
    bm.allocate(a)
    bm.allocate(b)  # nothing is cached yet
    a_blocks = list(a.block_table)
    for seq in (a, b):
        seq.num_cached_pairs = seq.num_pairs
        seq.append_slots((50, 51), final=False)
        bm.cache_full_blocks(seq)
    assert bm.prefix_cache is not None and bm.prefix_cache.num_cached_blocks == 2
    bm.free(a)
    bm.free(b)
    assert bm.num_evictable_blocks == 2 and bm.num_free_blocks == 8
    c = make(3, [*a.token_ids, 1, 2])
    bm.allocate(c)
    assert c.num_cached_pairs == 2 * BS and c.block_table[:2] == a_blocks[:2]  # the first copy cached


def test_disabled_cache_never_hits() -> None:
    bm = BlockManager(8, BS, enable_prefix_caching=False)
    a = make(1, list(range(1, 17)))
    run(bm, a, steps=2)
    bm.free(a)
    again = make(2, [*a.token_ids, 1, 2])
    bm.allocate(again)
    assert bm.prefix_cache is None and again.num_cached_pairs == 0


def test_stats_start_empty() -> None:
    stats = PrefixCache().stats
    assert (stats.num_queries, stats.num_query_pairs, stats.num_hit_pairs, stats.hit_rate) == (0, 0, 0, 0.0)
