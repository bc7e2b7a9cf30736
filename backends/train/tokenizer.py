"""The byte-level BPE tokenizer and the chat template of the PIPO models.

- Byte-level BPE: every byte string has an encoding, so there is no unknown token, and decoding with
  ``skip_special_tokens=False`` gives back the exact text.
- Digits are pre-split one by one, so every number is a sequence of single-digit tokens; the arithmetic in
  the reasoning traces relies on this.
- The ten special tokens of :mod:`pipo_agent.tasks.chat_format` have ids 0..9 in that order; ``<|pad|>`` is
  the pad token, ``<|im_end|>`` the end of an assistant turn (EOS). There is no BOS and nothing is added
  around encoded text.
- :data:`CHAT_TEMPLATE` renders exactly like :func:`pipo_agent.tasks.render_chat` (tests assert it).
"""

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from pipo_agent.tasks.chat_format import IM_END, PAD_TOKEN, SPECIAL_TOKENS

# Every tag trims the whitespace around it, so only the quoted strings reach the output.
CHAT_TEMPLATE: Final = (
    "{%- set ns = namespace(tools_block='') -%}"
    "{%- if tools -%}"
    "{%- set ns.tools_block = '# Tools\\n' -%}"
    "{%- for tool in tools -%}"
    "{%- set fn = tool['function'] if tool['function'] is defined else tool -%}"
    "{%- set params = fn['parameters'] if fn['parameters'] is defined and fn['parameters'] else {} -%}"
    "{%- set props = params['properties'] if params['properties'] is defined and params['properties'] else {} -%}"
    "{%- set required = params['required'] if params['required'] is defined and params['required'] else [] -%}"
    "{%- set sig = namespace(args=[]) -%}"
    "{%- for arg_name, prop in props.items() -%}"
    "{%- if prop['type'] is not defined -%}{%- set kind = 'any' -%}"
    "{%- elif prop['type'] is string -%}{%- set kind = prop['type'] -%}"
    "{%- else -%}{%- set kind = prop['type'] | join('|') -%}{%- endif -%}"
    "{%- set marker = '' if arg_name in required else '?' -%}"
    "{%- set sig.args = sig.args + [arg_name ~ marker ~ ': ' ~ kind] -%}"
    "{%- endfor -%}"
    "{%- set line = fn['name'] ~ '(' ~ sig.args | join(', ') ~ ')' -%}"
    "{%- if fn['description'] is defined and fn['description'] -%}"
    "{%- set line = line ~ ' - ' ~ fn['description'] -%}"
    "{%- endif -%}"
    "{%- set ns.tools_block = ns.tools_block ~ line ~ '\\n' -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{{- '<|im_start|>system\\n' ~ messages[0]['content'] -}}"
    "{%- if ns.tools_block -%}{{- '\\n' ~ ns.tools_block -}}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- set rest = messages[1:] -%}"
    "{%- else -%}"
    "{%- if ns.tools_block -%}{{- '<|im_start|>system\\n' ~ ns.tools_block ~ '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- set rest = messages -%}"
    "{%- endif -%}"
    "{%- for message in rest -%}"
    "{%- if message['role'] == 'system' or message['role'] == 'user' -%}"
    "{{- '<|im_start|>' ~ message['role'] ~ '\\n' ~ message['content'] ~ '<|im_end|>\\n' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{%- set body = namespace(parts=[]) -%}"
    "{%- if message['content'] is defined and message['content'] -%}"
    "{%- set body.parts = [message['content']] -%}"
    "{%- endif -%}"
    "{%- if message['tool_calls'] is defined and message['tool_calls'] -%}"
    "{%- for call in message['tool_calls'] -%}"
    "{%- set fn = call['function'] if call['function'] is defined else call -%}"
    "{%- set arguments = fn['arguments'] if fn['arguments'] is defined else {} -%}"
    "{%- if arguments is string -%}{%- set arguments_json = arguments -%}"
    "{%- else -%}{%- set arguments_json = arguments | tojson -%}{%- endif -%}"
    "{%- set body.parts = body.parts + ['<tool_call>\\n{\"name\": ' ~ (fn['name'] | tojson) ~ "
    "', \"arguments\": ' ~ arguments_json ~ '}\\n</tool_call>'] -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{%- set reasoning = message['reasoning_content'] if message['reasoning_content'] is defined "
    "and message['reasoning_content'] else '' -%}"
    "{{- '<|im_start|>assistant\\n<think>\\n' ~ reasoning ~ '\\n</think>\\n' ~ body.parts | join('\\n') "
    "~ '<|im_end|>\\n' -}}"
    "{%- elif message['role'] == 'tool' -%}"
    "{{- '<|im_start|>tool\\n<tool_response>\\n' ~ message['content'] ~ '\\n</tool_response><|im_end|>\\n' -}}"
    "{%- else -%}"
    "{{- raise_exception('unknown role: ' ~ message['role']) -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n<think>\\n' -}}{%- endif -%}"
)

_SPECIAL_PATTERN: Final = re.compile("|".join(re.escape(token) for token in SPECIAL_TOKENS))
_BYTE_ALPHABET_SIZE: Final = 256


def build_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of ``vocab_size`` entries (specials and the 256 bytes included) on ``texts``."""
    minimum = len(SPECIAL_TOKENS) + _BYTE_ALPHABET_SIZE
    if vocab_size < minimum:
        raise ValueError(
            f"vocab_size must be at least {minimum} (special tokens + 256 bytes), got {vocab_size}"
        )
    specials = [
        AddedToken(token, special=True, normalized=False, lstrip=False, rstrip=False, single_word=False)
        for token in SPECIAL_TOKENS
    ]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_without_special_tokens(texts), trainer=trainer)
    for token_id, token in enumerate(SPECIAL_TOKENS):
        if backend.token_to_id(token) != token_id:
            raise AssertionError(f"special token {token!r} did not get id {token_id}")
    return _wrap(backend)


def _without_special_tokens(texts: Iterable[str]) -> Iterator[str]:
    """Training text with the special tokens cut out, so no merges are spent on their pieces."""
    for text in texts:
        yield from (piece for piece in _SPECIAL_PATTERN.split(text) if piece)


def _wrap(backend: Tokenizer) -> PreTrainedTokenizerFast:
    named = {PAD_TOKEN, IM_END}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        eos_token=IM_END,
        bos_token=None,
        unk_token=None,
        extra_special_tokens=[token for token in SPECIAL_TOKENS if token not in named],
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
        add_bos_token=False,
        add_eos_token=False,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: str | Path) -> Path:
    """Write the tokenizer (and its chat template) so ``PreTrainedTokenizerFast.from_pretrained`` loads it."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(path))
    return path


def load_tokenizer(directory: str | Path) -> PreTrainedTokenizerFast:
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory))
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    return tokenizer
