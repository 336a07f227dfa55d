"""Phones as output units: espeak-ng's pronunciations and the phone tokenizer.

A model trained on phones need not learn English spelling from a few hundred sentences; the
beam search (:mod:`asr.beam`) walks a lexicon of phone spellings and lets the word LM choose
among homophones ("two", "too" and "to" are all ``t u:``).

Pronunciations come from espeak-ng's own G2P (:meth:`asr.synth.Espeak.phonemes`, voice
en-us): each word is looked up alone, so a word always has one spelling, in training
targets and in the lexicon alike. Its mnemonics are reduced to the :data:`PHONES` inventory:
stress marks go, and variants that only spelling or position tells apart merge (the flap
``t#`` and ``t2`` into ``t``; ``I#`` and ``I2`` into ``I``; reduced ``@2``, ``@-`` and
``a#`` into ``@``; the glottal stop of "certain" is the /t/ it stands for); markers that
are not sounds (``;`` palatal colouring, ``|``, ``!``) are dropped.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable

from asr.synth import Espeak
from asr.text import UnknownCharacterError

VOICE = "en-us"
# espeak-ng en-us phonemes after the merges below: 52, by frequency in lm_text
PHONES = (
    "n", "t", "I", "d", "s", "a", "l", "m", "D", "V", "k", "r", "E", "z", "w", "h", "@", "eI",
    "i:", "aI", "u:", "v", "p", "f", "b", "3", "oU", "i", "N", "3:", "g", "0", "S", "j", "aU",
    "@L", "U", "tS", "O@", "O:", "T", "dZ", "A@", "e@", "o@", "aa", "i@", "U@", "OI", "A:",
    "aI@", "Z",
)  # fmt: skip
_MERGE = {
    "t#": "t", "t2": "t", "I#": "I", "I2": "I", "@2": "@", "@-": "@", "a#": "@",
    "i@3": "i@", "aI3": "aI@", "r-": "r", "n-": "n", "O2": "O:", "O": "O:", "O~": "O:",
    "A~": "A:", "a:": "A:", "x": "k", "?": "t",
}  # fmt: skip
_PHONE_SET = frozenset(PHONES)
_MARKERS = frozenset({"", ";", "|", "!"})  # not sounds: palatal colouring, boundaries
_WARNED: set[str] = set()
log = logging.getLogger("asr.phones")


def phones_of(mnemonics: str, unmapped: set[str] | None = None) -> tuple[str, ...]:
    """espeak-ng mnemonics ("n_'aI_n_t_i:_n_h_'V_n_d_r_I2_d n_'aI_n_t_i") -> PHONES.

    Symbols outside the inventory (other than the markers) are left out rather than fail
    on one odd word, and added to ``unmapped`` when given.
    """
    phones = []
    for symbol in mnemonics.replace(" ", "_").split("_"):
        symbol = symbol.replace("'", "").replace(",", "")
        symbol = _MERGE.get(symbol, symbol)
        if symbol in _PHONE_SET:
            phones.append(symbol)
        elif unmapped is not None and symbol not in _MARKERS:
            unmapped.add(symbol)
    return tuple(phones)


def pronounce(words: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """{word: its phones} for distinct normalised words (lm_text's 51k words: 1-7 s)."""
    unique = sorted(set(words))
    mnemonics = Espeak().phonemes(unique, VOICE)
    unmapped: set[str] = set()
    spelled = {w: phones_of(m, unmapped) for w, m in zip(unique, mnemonics, strict=True)}
    if unmapped - _WARNED:
        # none in lm_text's 51k words: a new espeak-ng or unusual text
        log.warning("espeak-ng symbols outside the phone set, left out: %s", sorted(unmapped))
        _WARNED.update(unmapped)
    return spelled


class PhoneTokenizer:
    """Phones <-> ids: id 0 the CTC blank, id 1 the word boundary " ", then :data:`PHONES`.

    ``encode`` spells each word of a normalised text by :func:`pronounce` (cached).
    ``words`` holds the training transcripts' words by spelling, most frequent first
    (``{"t u:": ["to", "two", "too"]}``): the lexicon of a beam search given none, and what
    ``decode`` turns phone words back into (the first word; a spelling no training word has
    is written as its phones between slashes). Beam search with a lexicon is how a phone
    model is meant to be decoded; greedy decoding is the quick look.
    """

    BLANK = "<blank>"
    blank_id = 0

    def __init__(self, words: dict[str, list[str]] | None = None):
        self.symbols: list[str] = [self.BLANK, " ", *PHONES]
        self._ids = {s: i for i, s in enumerate(self.symbols)}
        self.words: dict[str, list[str]] = {k: list(v) for k, v in (words or {}).items()}
        self._cache: dict[str, tuple[str, ...]] = {}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> PhoneTokenizer:
        """Learn the spelling -> words table from normalised training texts."""
        counts = Counter(w for text in texts for w in text.split())
        tokenizer = cls()
        spelled = tokenizer.pronunciations(counts)
        words: dict[str, list[str]] = {}
        for word, _ in sorted(counts.items(), key=lambda x: (-x[1], x[0])):
            if spelled[word]:
                words.setdefault(" ".join(spelled[word]), []).append(word)
        tokenizer.words = dict(sorted(words.items()))
        return tokenizer

    @property
    def known_words(self) -> set[str]:
        """Every training word (with phones)."""
        return {w for words in self.words.values() for w in words}

    def __len__(self) -> int:
        return len(self.symbols)

    @property
    def space_id(self) -> int:
        return 1

    def pronunciations(self, words: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """{word: phones}, asking espeak-ng only for words not seen before."""
        words = set(words)
        missing = [w for w in words if w not in self._cache]
        if missing:
            self._cache.update(pronounce(missing))
        return {w: self._cache[w] for w in words}

    def encode(self, text: str) -> list[int]:
        """Phone ids of normalised ``text``, " " between words; a word without phones raises."""
        spelled = self.pronunciations(text.split())
        ids: list[int] = []
        for word in text.split():
            if not spelled[word]:
                raise UnknownCharacterError(
                    f"espeak-ng gives no phones for {word!r} (text: {text[:60]!r})"
                )
            if ids:
                ids.append(self.space_id)
            ids.extend(self._ids[p] for p in spelled[word])
        return ids

    def unknown_characters(self, text: str) -> set[str]:
        """Words of ``text`` that espeak-ng gives no phones for (nothing to train on)."""
        return {w for w, phones in self.pronunciations(text.split()).items() if not phones}

    def decode(self, ids: Iterable[int]) -> str:
        """Text for phone ids (blanks skipped, no CTC collapsing): see the class docstring."""
        words, current = [], []
        for i in [*ids, self.space_id]:
            if i == self.space_id:
                if current:
                    known = self.words.get(" ".join(current))
                    words.append(known[0] if known else "/" + "".join(current) + "/")
                current = []
            elif i != self.blank_id:
                current.append(self.symbols[i])
        return " ".join(words)

    def to_dict(self) -> dict:
        return {"type": "phone", "voice": VOICE, "phones": list(PHONES), "words": self.words}

    @classmethod
    def from_dict(cls, state: dict) -> PhoneTokenizer:
        if state.get("type") != "phone":
            raise ValueError(f"unknown tokenizer type {state.get('type')!r}")
        if tuple(state.get("phones", ())) != PHONES:
            raise ValueError("the checkpoint's phone inventory differs from this version's")
        # early phone checkpoints kept only the most frequent word of each spelling
        words = {k: [v] if isinstance(v, str) else v for k, v in state.get("words", {}).items()}
        return cls(words)
