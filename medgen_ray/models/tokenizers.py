"""Tokenizers the tiny twins use: byte-level, built in code, nothing downloaded."""

from __future__ import annotations


def byte_tokenizer(max_length: int, specials: list[str], pad: str, bos: str | None, eos: str):
    """A byte-level BPE tokenizer with no merges: every string tokenizes, no vocab file needed."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_length)
    fast.add_special_tokens({"pad_token": pad, "eos_token": eos, **({"bos_token": bos} if bos else {}),
                             "additional_special_tokens": [s for s in specials if s not in (pad, eos, bos)]})
    return fast
