"""Prefix (radix) cache over pairs: full KV blocks shared by requests whose slot streams begin alike (Part B O3).

Keys. Block `i` of a sequence holds pairs `[iB, (i+1)B)` (B = block_size), i.e. slots `[2iB, 2(i+1)B)`. Its key
is a hash chain:

    key_i = blake2b(key_{i-1} ‖ slots[2iB : 2(i+1)B + 1]),   key_{-1} = seed(writes_mtp_kv)

so equal keys mean equal slot streams from slot 0 to the block's end (128-bit digests; a collision is not a
practical concern). The bytes are the block's B pairs as exact `(tok, tok-or-PAD)` tuples, in order, plus:
  - ONE lookahead slot, the first slot after the block. The MTP layer's KV at pair j is computed from
    `fc[E[x_{2j+2}]; h_j]` (Part B §2.5), so the block's last MTP entry depends on that slot; without it, a prompt
    that diverges exactly at a block boundary would reuse an MTP entry made for another token.
  - A seed that separates requests that write the MTP layer's KV (tau < 1) from those that skip phase 2
    (tau >= 1), whose blocks lack MTP entries for the pairs they decoded.

Alignment. Pairing starts at slot 0 of the prompt, so two streams share block i only if their first
`2(i+1)B + 1` slots are identical. A stream shifted by one slot (a token added or dropped near the front, or a PAD
the previous turn emitted but the new prompt lacks) pairs every later slot differently and shares nothing past
the shift. A multi-turn client must therefore send the previous turn's slot stream back verbatim, PADs
included; the new turn's prompt then reuses every full block the previous turn computed.

Only full, computed blocks get keys; a partial last block is never shared. A keyed block that no sequence holds
stays here as evictable, in LRU order, until a request reuses it or the block manager evicts it for a new block.
"""

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

BlockKey = bytes

_DIGEST_BYTES = 16


def seed_key(writes_mtp_kv: bool) -> BlockKey:
    """The chain's root, `key_{-1}`."""
    tag = b"pipo-kv/backbone+mtp" if writes_mtp_kv else b"pipo-kv/backbone"
    return hashlib.blake2b(tag, digest_size=_DIGEST_BYTES).digest()


def block_key(parent: BlockKey, slot_ids: Sequence[int]) -> BlockKey:
    """`key_i` from `key_{i-1}` and the block's `2B + 1` slots (its pairs, then the lookahead slot)."""
    digest = hashlib.blake2b(parent, digest_size=_DIGEST_BYTES)
    digest.update(array("q", slot_ids).tobytes())  # "q": 8 bytes on every platform
    return digest.digest()


@dataclass(frozen=True)
class PrefixCacheStats:
    num_queries: int  # admissions that looked up their prompt
    num_query_pairs: int  # pairs those admissions needed in the cache
    num_hit_pairs: int  # of which were reused

    @property
    def hit_rate(self) -> float:
        return self.num_hit_pairs / self.num_query_pairs if self.num_query_pairs else 0.0


class PrefixCache:
    """Maps keys to the blocks that hold them, and keeps the unheld ones in LRU order for eviction."""

    def __init__(self) -> None:
        self._block_ids: dict[BlockKey, int] = {}
        self._evictable: OrderedDict[int, BlockKey] = OrderedDict()  # oldest first
        self._num_queries = 0
        self._num_query_pairs = 0
        self._num_hit_pairs = 0

    @property
    def num_cached_blocks(self) -> int:
        """Keyed blocks, held or evictable."""
        return len(self._block_ids)

    @property
    def num_evictable_blocks(self) -> int:
        return len(self._evictable)

    def lookup(self, key: BlockKey) -> int | None:
        return self._block_ids.get(key)

    def insert(self, key: BlockKey, block_id: int) -> bool:
        """Keys a held block; False (and no change) when another block already holds the same content."""
        if key in self._block_ids:
            return False
        self._block_ids[key] = block_id
        return True

    def is_evictable(self, block_id: int) -> bool:
        return block_id in self._evictable

    def park(self, key: BlockKey, block_id: int) -> None:
        """The last holder let go of a keyed block: it becomes the most recently used evictable block."""
        assert self._block_ids.get(key) == block_id and block_id not in self._evictable
        self._evictable[block_id] = key

    def unpark(self, block_id: int) -> None:
        """A request reuses an evictable block."""
        del self._evictable[block_id]

    def evict(self) -> int | None:
        """Drops the least recently used evictable block's key and returns the block (None when there is none)."""
        if not self._evictable:
            return None
        block_id, key = self._evictable.popitem(last=False)
        del self._block_ids[key]
        return block_id

    def record_query(self, num_query_pairs: int, num_hit_pairs: int) -> None:
        self._num_queries += 1
        self._num_query_pairs += num_query_pairs
        self._num_hit_pairs += num_hit_pairs

    @property
    def stats(self) -> PrefixCacheStats:
        return PrefixCacheStats(self._num_queries, self._num_query_pairs, self._num_hit_pairs)
