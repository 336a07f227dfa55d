"""Text normalisation and the character tokenizer.

One normaliser serves training targets, references and hypotheses, so that WER compares
like with like. :func:`normalize_text` does, in order:

1. typographic apostrophes (’ ‘ ʼ ´ `) become ``'`` (before NFKC, which would split ´
   into a space and a combining accent), then Unicode NFKC;
2. lowercase;
3. hyphens, dashes, minus signs and slashes (fraction slashes too: NFKC writes ½ as 1⁄2)
   become spaces ("well-known" -> "well known", "½" -> "1 2");
4. every other character that is not a letter, a digit, an apostrophe or a space is dropped;
5. apostrophes that do not sit between two letters/digits (quotes) are dropped
   ("'tis" -> "tis", "don't" stays);
6. runs of white space collapse to one space, ends are stripped.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Protocol

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00b4": "'", "`": "'"})
_SEPARATORS = re.compile(r"[-\u2010-\u2015\u2212/\u2044\u2215\\_]+")
_DROP = re.compile(r"[^\w' ]+")
_LONE_APOSTROPHE = re.compile(r"(?<![^\W_])'|'(?![^\W_])")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Normalise ``text`` as described in the module docstring."""
    text = unicodedata.normalize("NFKC", text.translate(_APOSTROPHES)).lower()
    text = _SEPARATORS.sub(" ", text)
    text = _SPACES.sub(" ", text)
    text = _DROP.sub("", text)
    text = _LONE_APOSTROPHE.sub("", text)
    return _SPACES.sub(" ", text).strip()


class Tokenizer(Protocol):
    """What training and decoding need of a tokenizer (:class:`CharTokenizer`,
    :class:`asr.phones.PhoneTokenizer`, :class:`asr.bpe.BpeTokenizer`): id 0 is the CTC
    blank, ``space_id`` ends a word."""

    symbols: list[str]
    blank_id: int

    def __len__(self) -> int: ...
    @property
    def space_id(self) -> int: ...
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Iterable[int]) -> str: ...
    def unknown_characters(self, text: str) -> set[str]: ...
    def to_dict(self) -> dict: ...


class UnknownCharacterError(ValueError):
    """Text holds a character the tokenizer was not built with."""

    @classmethod
    def naming(cls, char: str, text: str) -> UnknownCharacterError:
        """The error for ``char`` in ``text``: one line naming both (the text cut at 60)."""
        return cls(f"character {char!r} is not in the vocabulary (text: {text[:60]!r})")


class CharTokenizer:
    """Characters <-> ids. Id 0 is the CTC blank; the space character separates words.

    Built from normalised training transcripts; its vocabulary travels in the checkpoint
    (:meth:`to_dict` / :meth:`from_dict`) so decoding never depends on the training data.
    """

    BLANK = "<blank>"
    blank_id = 0

    def __init__(self, symbols: Iterable[str]):
        symbols = list(symbols)
        if not symbols or symbols[0] != self.BLANK:
            symbols = [self.BLANK, *[s for s in symbols if s != self.BLANK]]
        if len(set(symbols)) != len(symbols):
            raise ValueError("tokenizer symbols must be unique")
        self.symbols: list[str] = symbols
        self._ids = {s: i for i, s in enumerate(symbols)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        """Build the vocabulary from already normalised texts (sorted, so it is reproducible)."""
        chars: set[str] = set()
        for text in texts:
            chars.update(text)
        chars.add(" ")
        return cls([cls.BLANK, *sorted(chars)])

    def __len__(self) -> int:
        return len(self.symbols)

    @property
    def space_id(self) -> int:
        return self._ids[" "]

    def encode(self, text: str) -> list[int]:
        """Ids of the characters of normalised ``text``; unknown characters raise."""
        try:
            return [self._ids[c] for c in text]
        except KeyError as exc:
            raise UnknownCharacterError.naming(exc.args[0], text) from None

    def unknown_characters(self, text: str) -> set[str]:
        """Characters of ``text`` outside the vocabulary."""
        return {c for c in text if c not in self._ids}

    def decode(self, ids: Iterable[int]) -> str:
        """Characters for ``ids`` (blanks skipped, no CTC collapsing), spaces tidied."""
        chars = [self.symbols[i] for i in ids if i != self.blank_id]
        return _SPACES.sub(" ", "".join(chars)).strip()

    def to_dict(self) -> dict:
        return {"type": "char", "symbols": list(self.symbols)}

    @classmethod
    def from_dict(cls, state: dict) -> CharTokenizer:
        if state.get("type") != "char":
            raise ValueError(f"unknown tokenizer type {state.get('type')!r}")
        return cls(state["symbols"])


UNITS = ("char", "phone", "bpe")


def build_tokenizer(units: str, texts: Iterable[str], bpe_vocab_size: int = 256) -> Tokenizer:
    """A tokenizer of ``units`` ("char", "phone" (:mod:`asr.phones`) or "bpe" word pieces,
    about ``bpe_vocab_size`` of them (:mod:`asr.bpe`)) for normalised texts."""
    if units == "char":
        return CharTokenizer.from_texts(texts)
    if units == "phone":
        from asr.phones import PhoneTokenizer  # espeak-ng is only needed for phone models

        return PhoneTokenizer.from_texts(texts)
    if units == "bpe":
        from asr.bpe import BpeTokenizer  # sentencepiece is only needed for piece models

        return BpeTokenizer.from_texts(texts, bpe_vocab_size)
    raise ValueError(f"units must be one of {', '.join(UNITS)}, got {units!r}")


def tokenizer_from_dict(state: dict) -> Tokenizer:
    """Rebuild the tokenizer a checkpoint stored (its ``to_dict``)."""
    if isinstance(state, dict) and state.get("type") == "phone":
        from asr.phones import PhoneTokenizer

        return PhoneTokenizer.from_dict(state)
    if isinstance(state, dict) and state.get("type") == "bpe":
        from asr.bpe import BpeTokenizer

        return BpeTokenizer.from_dict(state)
    return CharTokenizer.from_dict(state)
