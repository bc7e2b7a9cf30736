"""Incremental text of a growing token list, for streaming.

Only a short window of tokens is decoded per step (so a long answer costs O(1) per token, not O(n)), and text
that may still turn out to be the start of a stop string is held back: a stop string is cut from the final text,
so nothing of it may have been streamed. A trailing U+FFFD (a multi-byte character split across tokens) waits
for the next token.
"""

from collections.abc import Callable, Sequence

REPLACEMENT_CHAR = "\ufffd"


class TextStreamer:
    def __init__(self, detokenize: Callable[[list[int]], str], stop: Sequence[str] = ()) -> None:
        self._decode = detokenize
        self._holdback = max((len(s) for s in stop), default=1) - 1
        self._prefix_offset = 0
        self._read_offset = 0
        self.text = ""  # decoded so far (held-back part included)
        self._emitted = 0

    def update(self, token_ids: list[int]) -> str:
        """New text for `token_ids` (the whole list so far), minus what a stop string might still claim."""
        if len(token_ids) > self._read_offset:
            window = token_ids[self._prefix_offset :]
            before = self._decode(window[: self._read_offset - self._prefix_offset])
            after = self._decode(window)
            if len(after) > len(before) and not after.endswith(REPLACEMENT_CHAR):
                self.text += after[len(before) :]
                self._prefix_offset = self._read_offset
                self._read_offset = len(token_ids)
        safe = len(self.text) - self._holdback
        if safe <= self._emitted:
            return ""
        delta = self.text[self._emitted : safe]
        self._emitted = safe
        return delta

    def finish(self, final_text: str) -> str:
        """The rest of `final_text` (the request's result text, cut before any stop string)."""
        delta = final_text[self._emitted :]
        self._emitted = len(final_text)
        return delta
