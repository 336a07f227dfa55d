"""Turning CTC log-probs into text.

``greedy_decode`` takes the best symbol per frame, merges repeats and drops blanks.
Beam search lives beside it behind the same :class:`Decoder` interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from asr.text import CharTokenizer


@dataclass
class Hypothesis:
    """One decoded utterance: text, score, and the output frame of each kept token."""

    text: str
    score: float = 0.0
    tokens: list[int] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)


def ctc_collapse(best: list[int], blank: int) -> tuple[list[int], list[int]]:
    """Merge repeats, drop blanks. Returns (tokens, frame of each token's first frame)."""
    tokens, frames = [], []
    previous = blank
    for t, symbol in enumerate(best):
        if symbol != blank and symbol != previous:
            tokens.append(symbol)
            frames.append(t)
        previous = symbol
    return tokens, frames


def greedy_decode(
    log_probs: torch.Tensor, lengths: torch.Tensor, tokenizer: CharTokenizer
) -> list[Hypothesis]:
    """Best path decoding of log_probs [B, T, V] with valid lengths [B]."""
    best_scores, best = log_probs.max(dim=-1)  # [B, T]
    best = best.cpu()
    best_scores = best_scores.float().cpu()
    hyps = []
    for b, length in enumerate(lengths.tolist()):
        tokens, frames = ctc_collapse(best[b, :length].tolist(), tokenizer.blank_id)
        score = float(best_scores[b, :length].sum())
        hyps.append(Hypothesis(tokenizer.decode(tokens), score, tokens, frames))
    return hyps


class Decoder:
    """The decoding interface: ``decoder(log_probs, lengths) -> list[Hypothesis]``."""

    def __init__(self, tokenizer: CharTokenizer):
        self.tokenizer = tokenizer

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[Hypothesis]:
        raise NotImplementedError


class GreedyDecoder(Decoder):
    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[Hypothesis]:
        return greedy_decode(log_probs, lengths, self.tokenizer)
