"""The byte tokenizer of the built-in ``seedfl:tiny`` model: no files, no download.

Token id = UTF-8 byte value for bytes 0x00–0xFD. The two bytes 0xFE and 0xFF
never occur in valid UTF-8, so their ids carry the special tokens instead:
254 is end-of-text and 255 is padding. The vocabulary is thus exactly 256.

It is a ``transformers`` fast tokenizer over a ``tokenizers`` byte-level BPE
with no merges, so padding, decoding and ``save_pretrained`` behave as for any
hub tokenizer and an exported directory reloads with ``AutoTokenizer``.
This module knows nothing about models.
"""

from __future__ import annotations

from typing import Any

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<pad>"
EOS_ID = 254
PAD_ID = 255


def _byte_symbols() -> dict[int, str]:
    """The printable stand-in character for each byte used by byte-level BPE.

    Printable Latin-1 bytes stand for themselves; the rest (controls, space,
    0x7F–0xA0, 0xAD) are mapped in order onto code points from U+0100 upward.
    """
    printable = {*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    symbols: dict[int, str] = {}
    shifted = 0
    for b in range(256):
        if b in printable:
            symbols[b] = chr(b)
        else:
            symbols[b] = chr(0x100 + shifted)
            shifted += 1
    return symbols


def byte_tokenizer(model_max_length: int = 2048) -> Any:
    """A fresh byte tokenizer (a ``PreTrainedTokenizerFast``)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    symbols = _byte_symbols()
    vocab = {symbols[b]: b for b in range(EOS_ID)}
    vocab[EOS_TOKEN] = EOS_ID
    vocab[PAD_TOKEN] = PAD_ID
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens([AddedToken(EOS_TOKEN, special=True),
                             AddedToken(PAD_TOKEN, special=True)])
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN,
        model_max_length=model_max_length,
    )
