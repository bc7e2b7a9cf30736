"""The paged KV pool: `num_blocks` blocks of `block_size` PAIRS, reference-counted, with the prefix cache on top.

Physical slot of pair j of a sequence: `block_table[j // block_size] * block_size + j % block_size`. The backbone's
full-attention layers and the MTP layer use the same slot (Part B §4.5), so this one mapping serves both.

A block is in exactly one of three states:
  free       ref count 0, no key, on the free list
  held       ref count >= 1, in that many block tables (more than one only for a shared, keyed, full block)
  evictable  ref count 0, keyed, parked in the prefix cache in LRU order; reusable by a prefix hit, or evicted
             for a new block once the free list is empty
`num_free_blocks` counts free and evictable blocks: both can be handed out. Freeing every sequence therefore
returns it to `num_blocks`.
"""

from collections import deque

from pipo_agent.backends.engine.errors import OutOfBlocksError, ProtocolError
from pipo_agent.backends.engine.prefix_cache import BlockKey, PrefixCache, block_key, seed_key
from pipo_agent.backends.engine.sequence import Sequence


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, *, enable_prefix_caching: bool = True) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"num_blocks={num_blocks} and block_size={block_size} must both be >= 1")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.prefix_cache = PrefixCache() if enable_prefix_caching else None
        self._ref_counts = [0] * num_blocks
        self._keys: list[BlockKey | None] = [None] * num_blocks
        self._free: deque[int] = deque(range(num_blocks))

    @property
    def num_free_blocks(self) -> int:
        """Blocks no sequence holds: free plus evictable cached ones."""
        return len(self._free) + self.num_evictable_blocks

    @property
    def num_evictable_blocks(self) -> int:
        return self.prefix_cache.num_evictable_blocks if self.prefix_cache else 0

    def ref_count(self, block_id: int) -> int:
        return self._ref_counts[block_id]

    def num_blocks_for(self, num_pairs: int) -> int:
        return -(-num_pairs // self.block_size)

    def can_allocate(self, seq: Sequence) -> bool:
        """Whether `allocate(seq)` has room, counting the blocks its prefix hits would reuse."""
        return self._fits(seq, self._match(seq))

    def allocate(self, seq: Sequence) -> None:
        """Blocks for all of `seq`'s pairs: reused prefix blocks first, then new ones; sets `num_cached_pairs`."""
        if seq.block_table:
            raise ProtocolError(f"sequence {seq.seq_id} already holds blocks {seq.block_table}")
        hits = self._match(seq)
        if not self._fits(seq, hits):
            raise OutOfBlocksError(f"no room for the {seq.num_pairs} pairs of sequence {seq.seq_id}")
        for block_id in hits:  # before taking new blocks, so that no eviction can take a hit
            if self.prefix_cache is not None and self.prefix_cache.is_evictable(block_id):
                self.prefix_cache.unpark(block_id)
            self._ref_counts[block_id] += 1
        seq.block_table = hits + [self._take() for _ in range(self.num_blocks_for(seq.num_pairs) - len(hits))]
        seq.num_cached_pairs = len(hits) * self.block_size
        if self.prefix_cache is not None:
            self.prefix_cache.record_query(seq.num_pairs, seq.num_cached_pairs)

    def can_append(self, seq: Sequence) -> bool:
        """Whether the pair fed back by the latest step has a slot (or a block can be found for it)."""
        return not self._needs_block(seq) or self.num_free_blocks > 0

    def append_slot(self, seq: Sequence) -> None:
        """Makes room for the latest pair: a new block when the last one is full."""
        if self._needs_block(seq):
            if self.num_free_blocks == 0:
                raise OutOfBlocksError(f"no free block for sequence {seq.seq_id}")
            seq.block_table.append(self._take())
        assert len(seq.block_table) * self.block_size >= seq.num_pairs, "one new pair per step"

    def cache_full_blocks(self, seq: Sequence) -> None:
        """Keys every block whose pairs are all computed and whose lookahead slot is known (see prefix_cache)."""
        if self.prefix_cache is None:
            return
        pairs_per_key = self.block_size * seq.width
        num_full = min(seq.num_cached_pairs // self.block_size, (seq.num_slots - 1) // pairs_per_key)
        first = num_full
        while first > 0 and self._keys[seq.block_table[first - 1]] is None:  # keyed blocks form a prefix
            first -= 1
        for i in range(first, num_full):
            parent = seed_key(seq.writes_mtp_kv) if i == 0 else self._keys[seq.block_table[i - 1]]
            assert parent is not None
            block_id = seq.block_table[i]
            key = block_key(parent, seq.token_ids[i * pairs_per_key : (i + 1) * pairs_per_key + 1])
            self._keys[block_id] = key
            # A False insert means another block already holds this content; this one is then freed unkeyed.
            self.prefix_cache.insert(key, block_id)

    def free(self, seq: Sequence) -> None:
        """Lets go of `seq`'s blocks; keyed ones stay cached as evictable. Resets `num_cached_pairs`."""
        # Tail blocks first, so LRU eviction takes a chain's tail before the prefix other requests may share.
        for block_id in reversed(seq.block_table):
            self._ref_counts[block_id] -= 1
            assert self._ref_counts[block_id] >= 0
            if self._ref_counts[block_id] > 0:
                continue
            key = self._keys[block_id]
            if (
                self.prefix_cache is not None
                and key is not None
                and self.prefix_cache.lookup(key) == block_id
            ):
                self.prefix_cache.park(key, block_id)
            else:
                self._keys[block_id] = None
                self._free.append(block_id)
        seq.block_table = []
        seq.num_cached_pairs = 0

    def slot_mapping(self, seq: Sequence, start_pair: int, end_pair: int) -> list[int]:
        """Physical KV slots of pairs `[start_pair, end_pair)` of `seq`."""
        if not 0 <= start_pair <= end_pair <= len(seq.block_table) * self.block_size:
            raise ProtocolError(
                f"pairs [{start_pair}, {end_pair}) lie outside the {len(seq.block_table)} blocks "
                f"of sequence {seq.seq_id}"
            )
        size, table = self.block_size, seq.block_table
        return [table[j // size] * size + j % size for j in range(start_pair, end_pair)]

    def _needs_block(self, seq: Sequence) -> bool:
        num_pairs: int = seq.num_pairs
        return len(seq.block_table) * self.block_size < num_pairs

    def _fits(self, seq: Sequence, hits: list[int]) -> bool:
        num_new = self.num_blocks_for(seq.num_pairs) - len(hits)
        # An evictable block that a hit reuses is no longer available for new blocks.
        cache = self.prefix_cache
        num_parked_hits: int = sum(1 for b in hits if cache.is_evictable(b)) if cache is not None else 0
        return num_new <= self.num_free_blocks - num_parked_hits

    def _match(self, seq: Sequence) -> list[int]:
        """Blocks holding `seq`'s longest cached prefix. The last pair is always left to compute (its hidden
        state gives the next tokens), so at most `(num_pairs - 1) // block_size` blocks match."""
        if self.prefix_cache is None:
            return []
        pairs_per_key = self.block_size * seq.width
        hits: list[int] = []
        key = seed_key(seq.writes_mtp_kv)
        for i in range((seq.num_pairs - 1) // self.block_size):
            key = block_key(key, seq.token_ids[i * pairs_per_key : (i + 1) * pairs_per_key + 1])
            block_id = self.prefix_cache.lookup(key)
            if block_id is None:
                break
            hits.append(block_id)
        return hits

    def _take(self) -> int:
        """A block with no holder and no key: from the free list, else by evicting the LRU cached block."""
        if self._free:
            block_id = self._free.popleft()
        else:
            evicted = self.prefix_cache.evict() if self.prefix_cache is not None else None
            if evicted is None:
                raise OutOfBlocksError("the KV pool is exhausted")
            block_id = evicted
            self._keys[block_id] = None
        assert self._ref_counts[block_id] == 0 and self._keys[block_id] is None
        self._ref_counts[block_id] = 1
        return block_id
