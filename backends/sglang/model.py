"""The model class SGLang builds for `architectures: ["PipoForSGLang"]` (see `config.py`).

It holds the same `PipoModel` the embedded engine serves, so both run the same modules on the same weights.
A Qwen3.5 backbone runs as SGLang's own Qwen3.5 layers instead (`hybrid.py`), loaded from the same tensors.
SGLang's loader streams `(name, tensor)` pairs from the checkpoint's safetensors files; `load_weights` checks
them against the model like `load_pipo` does (our key layout and the published one) before loading.

The PIPO decoding algorithm (`worker.py`) drives the model directly over SGLang's KV pool, so the plain
`forward` SGLang would call for autoregressive decoding is refused with the flag to use instead.
"""

from collections.abc import Iterable

import torch
from torch import nn

from pipo_agent.backends.model.checkpoint import load_tensors
from pipo_agent.backends.model.pipo import PipoModel
from pipo_agent.backends.sglang import ALGORITHM, ARCHITECTURE
from pipo_agent.backends.sglang.config import HYBRID_BACKBONES, PipoSGLangConfig


class PipoForSGLang(nn.Module):
    def __init__(self, config: PipoSGLangConfig, quant_config: object = None, prefix: str = "") -> None:
        super().__init__()
        if quant_config is not None:
            raise ValueError("PIPO checkpoints are served unquantized (drop --quantization)")
        self.config = config
        pipo_config = config.pipo_config()
        self.pipo = PipoModel(pipo_config)
        self.hybrid: nn.Module | None = None
        if pipo_config.backbone.get("model_type") in HYBRID_BACKBONES:
            from pipo_agent.backends.sglang.hybrid import HybridLayers

            self.hybrid = HybridLayers(pipo_config.backbone)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        dtype = self.pipo.embed_tokens.weight.dtype
        load_tensors(self.pipo, {name: tensor for name, tensor in weights})
        if self.hybrid is not None:
            self.hybrid.load_from(self.pipo)  # type: ignore[operator]
        self.pipo.to(dtype).eval()

    def forward(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError(
            f"{ARCHITECTURE} decodes two tokens per step and is served only with "
            f"--speculative-algorithm {ALGORITHM} (pipo-agent serve --engine sglang sets it)"
        )


EntryClass = PipoForSGLang
