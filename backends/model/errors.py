"""Errors of the model package.

ModelError
├── ModelConfigError   a configuration names an unknown variant or is inconsistent (raised early)
└── CheckpointError    a checkpoint on disk is missing keys, has unexpected keys or wrong shapes
"""


class ModelError(Exception):
    """Base class of the model package's errors."""


class ModelConfigError(ModelError, ValueError):
    """A model configuration is invalid; the message lists the valid choices."""


class CheckpointError(ModelError):
    """A checkpoint cannot be loaded; the message names what is wrong."""
