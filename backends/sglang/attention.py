"""The pair-slot attention backend SGLang selects as `--attention-backend pipo`.

SGLang's KV pool has one row per token slot and its request-to-token table lists a request's slots in order.
PIPO keeps K/V once per *pair*: pair `j` of a request lives in the row of the request's `j`-th slot, for every
backbone layer and for the MTP layer (the pool's last layer). The worker describes each step to the embedded engine's
runner with block size 1 (a request's "block table" is its row of slots), and this backend runs the same
kernels: Triton (`pipo_agent.backends.kernels`) on CUDA, PyTorch SDPA on the CPU.

For the dense backbones the `PIPO` worker calls `store`/`attend` through the embedded engine's layers. For a
Qwen3.5 backbone, SGLang's own layers call this backend through SGLang's interface (`forward_extend`), inside
SGLang's hybrid linear-attention backend, over a pair-space forward batch that carries our metadata
(`META_FIELD`, set by the hybrid runner): the same kernels, the same one row per pair.
"""

import torch

from pipo_agent.backends.engine.attention import AttentionMetadata, KVPair, make_attention_backend
from pipo_agent.backends.engine.paged_model import KVCache
from pipo_agent.backends.sglang import ALGORITHM, ATTENTION_BACKEND

try:  # only inside an SGLang process
    from sglang.srt.layers.attention.base_attn_backend import AttentionBackend as _SGLangBackend
except ImportError:  # pragma: no cover - the plugin is never registered without SGLang
    _SGLangBackend = object  # type: ignore[assignment,misc]


META_FIELD = "pipo_attention_metadata"


class PairSlotAttention(_SGLangBackend):  # type: ignore[misc,valid-type]
    def __init__(self, runner: object) -> None:
        super().__init__()
        device = torch.device(getattr(runner, "device", "cpu"))
        self.device = device
        self.req_to_token_pool = getattr(runner, "req_to_token_pool", None)
        self.token_to_kv_pool = getattr(runner, "token_to_kv_pool", None)
        self.meta: AttentionMetadata | None = None
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

    # ---- SGLang's interface, over a pair-space forward batch (SGLang's Qwen3.5 layers) ----

    def init_forward_metadata(self, forward_batch: object) -> None:
        meta = getattr(forward_batch, META_FIELD, None)
        if meta is None:
            raise RuntimeError(
                f"the {ATTENTION_BACKEND!r} attention backend attends over pairs and serves only "
                f"--speculative-algorithm {ALGORITHM}"
            )
        self.meta = meta

    def forward_extend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        layer: object,
        forward_batch: object,
        save_kv_cache: bool = True,
        **kwargs: object,
    ) -> torch.Tensor:
        """Attention of the batch's new pair rows: stores their K/V at their slots, attends over each request's
        pairs (causal within the new rows)."""
        meta = self.meta
        assert meta is not None
        n = q.shape[0]
        head_dim = int(layer.qk_head_dim)  # type: ignore[attr-defined]
        q = q.reshape(n, -1, head_dim)
        pool = self.token_to_kv_pool
        layer_id = int(layer.layer_id)  # type: ignore[attr-defined]
        cache = (pool.get_key_buffer(layer_id), pool.get_value_buffer(layer_id))  # type: ignore[union-attr]
        if save_kv_cache:
            self.kernels.store(
                k.reshape(n, -1, head_dim), v.reshape(n, -1, int(layer.v_head_dim)), cache, meta
            )  # type: ignore[attr-defined]
        out = self.kernels.attend(q, cache, meta, float(layer.scaling))  # type: ignore[attr-defined]
        return out.reshape(n, -1).to(q.dtype)

    def forward_decode(self, *args: object, **kwargs: object) -> torch.Tensor:
        raise RuntimeError("PIPO runs every step as an extend over pairs; a decode-mode batch is a bug")


def create(runner: object) -> PairSlotAttention:
    return PairSlotAttention(runner)
