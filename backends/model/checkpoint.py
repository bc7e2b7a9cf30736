"""Save and load PIPO checkpoints: `model.safetensors` + `config.json`.

Keys follow the published PIPO layout, so published checkpoints load and ours are interchangeable:
backbone `model.language_model.*`, untied `lm_head.weight`, `compressor.*`, `mtp.*`,
`confidence_head.*`. A checkpoint without any `compressor.*` key (a plain backbone plus MTP) gets the
neutral compressor initialisation; anything else missing, unexpected or mis-shaped is an error.
"""

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pipo_agent.backends.model.config import PipoConfig
from pipo_agent.backends.model.errors import CheckpointError
from pipo_agent.backends.model.pipo import PipoModel

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_BACKBONE_PREFIX = "model.language_model."
# Parts of published multimodal checkpoints that a text model ignores.
_IGNORED_PREFIXES = ("model.visual.", "visual.")


def _to_file_key(key: str) -> str | None:
    if key.startswith("backbone.model."):
        return _BACKBONE_PREFIX + key.removeprefix("backbone.model.")
    if key == "backbone.lm_head.weight":
        return "lm_head.weight"
    return key


def _to_module_key(key: str) -> str:
    if key.startswith(_BACKBONE_PREFIX):
        return "backbone.model." + key.removeprefix(_BACKBONE_PREFIX)
    if key.startswith("model.") and not key.startswith(_IGNORED_PREFIXES):
        # Plain text-model layout (`model.layers.*`) is accepted too.
        return "backbone.model." + key.removeprefix("model.")
    if key == "lm_head.weight":
        return "backbone.lm_head.weight"
    return key


def _tied(model: PipoModel) -> bool:
    return bool(getattr(model.backbone.config, "tie_word_embeddings", False))


def save_pipo(model: PipoModel, directory: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write the checkpoint; `dtype` casts floating tensors (e.g. bfloat16 to halve the size)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key == "backbone.lm_head.weight" and _tied(model):
            continue
        file_key = _to_file_key(key)
        assert file_key is not None
        tensor = value.detach().cpu().contiguous()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[file_key] = tensor
    save_file(tensors, str(out / WEIGHTS_NAME), metadata={"format": "pt"})
    (out / CONFIG_NAME).write_text(json.dumps(model.config.to_json_dict(), indent=2, sort_keys=True) + "\n")
    return out


def load_config(directory: str | Path) -> PipoConfig:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"no {CONFIG_NAME} in {directory}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    return PipoConfig.from_json_dict(data)


def load_pipo(directory: str | Path, dtype: torch.dtype = torch.float32) -> PipoModel:
    """Load a checkpoint written by `save_pipo` or in the published layout; returns an eval-mode model."""
    directory = Path(directory)
    config = load_config(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"no {WEIGHTS_NAME} in {directory}")
    model = PipoModel(config)
    load_tensors(model, load_file(str(weights)))
    return model.to(dtype).eval()


def load_tensors(model: PipoModel, file_tensors: dict[str, torch.Tensor]) -> None:
    """Loads tensors named as in a checkpoint file (ours or the published layout) into `model`, after checking
    that they match it: missing, unexpected and mis-shaped keys raise `CheckpointError` naming them."""
    kept = [k for k in file_tensors if not k.startswith(_IGNORED_PREFIXES)]
    state = {_to_module_key(k): file_tensors[k] for k in kept}
    _check_keys(model, state, {_to_module_key(k): k for k in kept})
    model.load_state_dict(state, strict=False)
    if _tied(model):
        model.backbone.tie_weights()


def _check_keys(model: PipoModel, state: dict[str, torch.Tensor], file_keys: dict[str, str]) -> None:
    """`file_keys` maps each module key of `state` back to its name in the file, for the messages."""
    expected = model.state_dict()
    optional = {"backbone.lm_head.weight"} if _tied(model) else set()
    has_compressor = any(k.startswith("compressor.") for k in state)
    if not has_compressor:
        logger.info("checkpoint has no compressor weights: using the neutral initialisation")
        optional |= {k for k in expected if k.startswith("compressor.")}
    missing = sorted(k for k in expected if k not in state and k not in optional)
    unexpected = sorted(file_keys[k] for k in state if k not in expected)
    wrong = sorted(
        f"{file_keys[k]} (checkpoint {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
        for k in state
        if k in expected and state[k].shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(_file_names(missing))}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {', '.join(wrong)}")
    if problems:
        raise CheckpointError("checkpoint does not match the model config — " + "; ".join(problems))


def _file_names(keys: list[str]) -> list[str]:
    return [_to_file_key(k) or k for k in keys]
