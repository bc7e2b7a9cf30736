"""Incremental detokenization and the reasoning / text / tool-call split of a streamed assistant turn.

Tags may arrive split across steps (a tokenizer without them as special tokens, or a scripted stream), so
the splitter holds back any tail that could still grow into the next tag: reasoning never leaks into the
answer text, and tool-call JSON never reaches it either (tool calls are reported once parsed).
"""

from collections.abc import Callable
from enum import StrEnum

from pipo_agent.tasks import THINK_END, TOOL_CALL_END, TOOL_CALL_START

REPLACEMENT_CHAR = "\ufffd"  # what a byte-level decoder gives for an incomplete UTF-8 sequence


class IncrementalDetokenizer:
    """Decodes the growing token list and returns only the new suffix of its text.

    A trailing replacement character is held back: it usually means a multi-byte character whose remaining
    bytes come with the next token.
    """

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self.ids: list[int] = []
        self.text = ""
        self._emitted = 0

    def push(self, token_ids: list[int]) -> str:
        if not token_ids:
            return ""
        self.ids.extend(token_ids)
        self.text = self._decode(self.ids)
        if self.text.endswith(REPLACEMENT_CHAR):
            return ""
        return self._advance()

    def flush(self) -> str:
        return self._advance()

    def _advance(self) -> str:
        delta = self.text[self._emitted :]
        self._emitted = len(self.text)
        return delta


class Channel(StrEnum):
    REASONING = "reasoning"
    TEXT = "text"
    TOOL_CALL = "tool_call"  # never emitted


# In each channel, the tag that ends it and the channel it leads to. One newline on either side of a tag
# belongs to the format (`{reasoning}\n</think>\n{content}\n<tool_call>\n{json}\n</tool_call>`).
_TRANSITIONS: dict[Channel, tuple[str, Channel]] = {
    Channel.REASONING: (THINK_END, Channel.TEXT),
    Channel.TEXT: (TOOL_CALL_START, Channel.TOOL_CALL),
    Channel.TOOL_CALL: (TOOL_CALL_END, Channel.TEXT),
}


def _partial_tag(text: str, tag: str) -> int:
    """Length of the longest tail of `text` that is a proper prefix of `tag` or of newline + `tag`."""
    markers = (tag, "\n" + tag)
    return max((k for m in markers for k in range(1, len(m)) if text.endswith(m[:k])), default=0)


class ChannelSplitter:
    """Feed text deltas of one turn (starting inside the reasoning); get `(channel, text)` pieces back."""

    def __init__(self) -> None:
        self.channel = Channel.REASONING
        self._pending = ""
        self._strip_newline = False

    def feed(self, text: str) -> list[tuple[Channel, str]]:
        self._pending += text
        out: list[tuple[Channel, str]] = []
        while True:
            if self._strip_newline:
                if not self._pending:
                    break
                self._pending = self._pending.removeprefix("\n")
                self._strip_newline = False
            tag, following = _TRANSITIONS[self.channel]
            found = self._pending.find(tag)
            if found < 0:
                keep = len(self._pending) - _partial_tag(self._pending, tag)
                self._emit(out, self._pending[:keep])
                self._pending = self._pending[keep:]
                break
            self._emit(out, self._pending[:found].removesuffix("\n"))
            self._pending = self._pending[found + len(tag) :]
            self._strip_newline = True
            self.channel = following
        return out

    def flush(self) -> list[tuple[Channel, str]]:
        """The held-back tail at the end of the turn."""
        out: list[tuple[Channel, str]] = []
        self._emit(out, self._pending)
        self._pending = ""
        return out

    def _emit(self, out: list[tuple[Channel, str]], text: str) -> None:
        if text and self.channel is not Channel.TOOL_CALL:
            out.append((self.channel, text))
