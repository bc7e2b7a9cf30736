"""The PIPO model: compressor ("pair-in"), backbone, MTP head ("pair-out") and confidence head.

Public entry points are :class:`PipoModel`, :class:`PipoConfig`, the checkpoint functions and the
variant registries. Everything here is plain PyTorch over Hugging Face backbones.
"""

from pipo_agent.backends.model.checkpoint import load_pipo, save_pipo
from pipo_agent.backends.model.compressor import COMPRESSORS, build_compressor
from pipo_agent.backends.model.confidence import CONFIDENCE_HEADS, build_confidence_head
from pipo_agent.backends.model.config import PipoConfig
from pipo_agent.backends.model.constants import IGNORE_INDEX, PAIR
from pipo_agent.backends.model.errors import CheckpointError, ModelConfigError, ModelError
from pipo_agent.backends.model.pipo import PipoModel, PipoOutput

__all__ = [
    "COMPRESSORS",
    "CONFIDENCE_HEADS",
    "IGNORE_INDEX",
    "PAIR",
    "CheckpointError",
    "ModelConfigError",
    "ModelError",
    "PipoConfig",
    "PipoModel",
    "PipoOutput",
    "build_compressor",
    "build_confidence_head",
    "load_pipo",
    "save_pipo",
]
