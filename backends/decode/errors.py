"""Errors of the decode package. All of them are misuse, raised before any model work starts.

DecodeError
├── SamplingParamsError   a sampling parameter is out of range, or the decoder cannot honour it
│                         (stop strings without a detokenizer); the message names the field and its range
└── PromptError           the prompt is empty or holds a token id outside the vocabulary
    └── ContextLengthError  prompt + max_new_tokens do not fit the backbone's context
"""


class DecodeError(Exception):
    """Base class of the decode package's errors."""


class SamplingParamsError(DecodeError, ValueError):
    """Invalid sampling parameters; the message names each bad field and its valid range."""


class PromptError(DecodeError, ValueError):
    """The prompt cannot be decoded from (empty, or a token id outside the vocabulary)."""


class ContextLengthError(PromptError):
    """The prompt plus the new-token budget exceed the backbone's `max_position_embeddings`."""
