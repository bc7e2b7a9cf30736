"""PIPO hosted in SGLang, as an out-of-tree plugin (entry point group `sglang.srt.plugins`).

SGLang keeps what it is good at — the HTTP servers (native `/generate` and OpenAI-compatible), tokenization,
the scheduler with continuous batching, the request-to-slot table and the KV pool — and the plugin adds PIPO:

- `config.py`   a `transformers` config for `model_type: "pipo"`, so SGLang reads our `config.json`;
- `model.py`    the model class SGLang builds and loads (our checkpoints and the published key layout);
- `attention.py` the pair-slot attention backend, registered as `pipo` (our Triton kernels on GPU, torch on CPU);
- `hybrid.py`   Qwen3.5 backbones: SGLang's own Qwen3.5 layers (Gated-DeltaNet + gated attention) run the
                backbone and the MTP layer over a pair-space forward batch (`hybrid_config.py`: their configs);
- `worker.py`   the `PIPO` decoding algorithm: phase 1 backbone -> token1, phase 2 MTP + confidence -> token2
                or PAD, no verify pass, per-request tau from `custom_params`, PIPO stats in `meta_info`;
- `plugin.py`   the entry point that registers all of the above, after checking the SGLang version;
- `launch.py`   `pipo-agent serve --engine sglang`: the server arguments PIPO needs, and the CPU stand-ins
                in `cpu_shims/` (`sgl_kernel`, `torchvision`) on a machine without a GPU.

Nothing here imports SGLang at import time except `plugin.py`'s `register`, `worker.py`, `attention.py`,
`hybrid.py` and `hybrid_config.py`, which only run inside an SGLang process.
"""

SGLANG_VERSION = (
    "0.5.23"  # the plugin touches SGLang internals (ScheduleBatch, Req, the spec-worker contract)
)
ALGORITHM = "PIPO"
ATTENTION_BACKEND = "pipo"
ARCHITECTURE = "PipoForSGLang"

# `meta_info[TOKEN_KIND_KEY]`: one code per output token.
TOKEN1_NO_DRAFT, TOKEN1_REJECTED, TOKEN1_KEPT, DRAFT = 0, 1, 2, 3
TOKEN_KIND_KEY = "pipo_token_kind"


def stats_from_kinds(kinds: list[int]) -> dict[str, float]:
    """Steps, drafts proposed and committed, and tokens per step from a response's per-token kinds."""
    steps = sum(1 for k in kinds if k != DRAFT)
    proposed = sum(1 for k in kinds if k in (TOKEN1_REJECTED, TOKEN1_KEPT))
    committed = sum(1 for k in kinds if k == DRAFT)
    return {
        "steps": steps,
        "drafts_proposed": proposed,
        "drafts_committed": committed,
        "tokens_per_step": len(kinds) / steps if steps else 0.0,
    }
