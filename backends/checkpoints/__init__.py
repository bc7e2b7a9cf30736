"""Where the shipped default model lives: package data under `default/` (PIPO model + tokenizer) and
`default/teacher/` (the AR teacher it was distilled from, a Hugging Face causal LM).

Nothing here imports torch, so the CLI can resolve paths before loading anything.
"""

from pathlib import Path
from typing import Final

__all__ = [
    "CHECKPOINTS_DIR",
    "MissingCheckpointError",
    "default_model_dir",
    "default_teacher_dir",
    "teacher_inside",
]

CHECKPOINTS_DIR: Final = Path(__file__).resolve().parent
_CONFIG_NAME: Final = "config.json"


class MissingCheckpointError(FileNotFoundError):
    """The shipped checkpoint directory has no `config.json` (not installed or not built yet)."""


def _checked(directory: Path, what: str) -> Path:
    if not (directory / _CONFIG_NAME).is_file():
        raise MissingCheckpointError(
            f"no shipped {what} at {directory} (it has no {_CONFIG_NAME}); build one with "
            f"`pipo-agent train all` and copy it there, or pass a checkpoint directory explicitly"
        )
    return directory


def default_model_dir() -> Path:
    """The shipped PIPO checkpoint (weights, `config.json` and tokenizer files in one directory)."""
    return _checked(CHECKPOINTS_DIR / "default", "PIPO model")


def teacher_inside(model_dir: Path) -> Path | None:
    """The AR teacher a PIPO checkpoint folder carries in `teacher/` (the layout `train export` writes),
    or None when it carries none."""
    teacher = model_dir / "teacher"
    return teacher if (teacher / _CONFIG_NAME).is_file() else None


def default_teacher_dir() -> Path:
    """The shipped AR teacher (`AutoModelForCausalLM.from_pretrained` loads it)."""
    return _checked(CHECKPOINTS_DIR / "default" / "teacher", "AR teacher")
