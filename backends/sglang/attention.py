"""The pair-slot attention backend SGLang selects as `--attention-backend pipo`.

SGLang's KV pool has one row per token slot and its request-to-token table lists a request's slots in order.
PIPO keeps K/V once per *pair*: pair `j` of a request lives in the row of the request's `j`-th slot, for every
backbone layer and for the MTP layer (the pool's last layer). The worker describes each step to the embedded engine's
runner with block size 1 (a request's "block table" is its row of slots), and this backend runs the same
kernels: Triton (`pipo_agent.backends.kernels`) on CUDA, PyTorch SDPA on the CPU.

SGLang's own per-token `forward_extend`/`forward_decode` entry points are not used by PIPO: the `PIPO` worker
calls `store`/`attend` through the model's layers, for whole pairs.
"""

import torch

from pipo_agent.backends.engine.attention import AttentionMetadata, KVPair, make_attention_backend
from pipo_agent.backends.engine.paged_model import KVCache
from pipo_agent.backends.sglang import ALGORITHM, ATTENTION_BACKEND

try:  # only inside an SGLang process
    from sglang.srt.layers.attention.base_attn_backend import AttentionBackend as _SGLangBackend
except ImportError:  # pragma: no cover - the plugin is never registered without SGLang
    _SGLangBackend = object  # type: ignore[assignment,misc]


class PairSlotAttention(_SGLangBackend):  # type: ignore[misc,valid-type]
    def __init__(self, runner: object) -> None:
        super().__init__()
        device = torch.device(getattr(runner, "device", "cpu"))
        self.device = device
        self.kernels = make_attention_backend(None, device)
        self.name = self.kernels.name
        self.needs_torch_metadata = self.kernels.needs_torch_metadata

    # ---- what the PIPO worker uses ----

    @staticmethod
    def kv_view(pool: object, backbone_layers: int) -> KVCache:
        """The backbone's layers and the MTP layer over SGLang's pool buffers (`[slots, kv_heads, head_dim]`)."""

        def layer(i: int) -> KVPair:
            return pool.get_key_buffer(i), pool.get_value_buffer(i)  # type: ignore[attr-defined]

        return KVCache([layer(i) for i in range(backbone_layers)], layer(backbone_layers))

    def store(self, k: torch.Tensor, v: torch.Tensor, cache: KVPair, meta: AttentionMetadata) -> None:
        self.kernels.store(k, v, cache, meta)

    def attend(self, q: torch.Tensor, cache: KVPair, meta: AttentionMetadata, scale: float) -> torch.Tensor:
        return self.kernels.attend(q, cache, meta, scale)

    # ---- SGLang's per-token interface: not PIPO's ----

    def init_forward_metadata(self, forward_batch: object) -> None:
        raise RuntimeError(
            f"the {ATTENTION_BACKEND!r} attention backend attends over pairs and serves only "
            f"--speculative-algorithm {ALGORITHM}"
        )

    def forward_extend(self, *args: object, **kwargs: object) -> torch.Tensor:
        self.init_forward_metadata(None)
        raise AssertionError  # unreachable

    def forward_decode(self, *args: object, **kwargs: object) -> torch.Tensor:
        self.init_forward_metadata(None)
        raise AssertionError  # unreachable


def create(runner: object) -> PairSlotAttention:
    return PairSlotAttention(runner)
