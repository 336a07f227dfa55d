"""Word and character error rates, scored with jiwer over normalised text.

Corpus-level rates are computed from summed edit counts (not averaged per utterance),
the convention of sclite, Kaldi and icefall.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import jiwer


@dataclass
class ErrorCounts:
    """Summed alignment counts over a set of utterances."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    hits: int = 0

    @property
    def reference_length(self) -> int:
        return self.substitutions + self.deletions + self.hits

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        return self.errors / max(self.reference_length, 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "errors": self.errors, "reference_length": self.reference_length}


def word_counts(references: list[str], hypotheses: list[str]) -> ErrorCounts:
    """Summed word-level S/D/I/H counts."""
    return _counts(references, hypotheses, jiwer.process_words, str.split)


def char_counts(references: list[str], hypotheses: list[str]) -> ErrorCounts:
    """Summed character-level S/D/I/H counts (spaces count as characters, as jiwer's CER)."""
    return _counts(references, hypotheses, jiwer.process_characters, list)


def _counts(references: list[str], hypotheses: list[str], process, split) -> ErrorCounts:
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    total = ErrorCounts()
    # jiwer refuses empty references: those utterances count every hypothesis unit as an
    # insertion, and the rest go to jiwer in one call.
    pairs = [(r, h) for r, h in zip(references, hypotheses, strict=True) if r.strip()]
    for ref, hyp in zip(references, hypotheses, strict=True):
        if not ref.strip():
            total.insertions += len(split(hyp.strip()))
    if pairs:
        out = process([r for r, _ in pairs], [h for _, h in pairs])
        total.substitutions += out.substitutions
        total.deletions += out.deletions
        total.insertions += out.insertions
        total.hits += out.hits
    return total


def wer(references: list[str], hypotheses: list[str]) -> float:
    return word_counts(references, hypotheses).rate


def cer(references: list[str], hypotheses: list[str]) -> float:
    return char_counts(references, hypotheses).rate
