"""Tests for asr.decoding on hand-built CTC log-prob matrices."""

import math

import pytest
import torch

from asr.decoding import Decoder, GreedyDecoder, Hypothesis, ctc_collapse, greedy_decode
from asr.text import CharTokenizer

TOK = CharTokenizer.from_texts(["abc"])  # 0 <blank>, 1 ' ', 2 a, 3 b, 4 c
assert TOK.symbols == ["<blank>", " ", "a", "b", "c"]
ID = {"-": 0, " ": 1, "a": 2, "b": 3, "c": 4}
P_BEST = 0.9


def frames(path: str) -> torch.Tensor:
    """Log-probs [T, V] whose best symbol per frame spells ``path`` ("-" is the blank)."""
    vocab = len(TOK)
    probs = torch.full((len(path), vocab), (1 - P_BEST) / (vocab - 1))
    for t, ch in enumerate(path):
        probs[t, ID[ch]] = P_BEST
    return probs.log()


def decode_one(path: str) -> Hypothesis:
    lp = frames(path)[None]
    (hyp,) = greedy_decode(lp, torch.tensor([lp.shape[1]]), TOK)
    return hyp


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("aaabb", "ab"),  # repeats merge
        ("a-a", "aa"),  # a blank separates a doubled letter
        ("aa--aa", "aa"),
        ("aa-aa-aa", "aaa"),
        ("abab", "abab"),
        ("---c-", "c"),  # leading / trailing blanks
        ("--ab--", "ab"),
        ("a- -b", "a b"),
        ("a  b", "a b"),  # repeated space frames merge
        ("a -  -b", "a b"),  # two spaces in a row are tidied to one
        (" ab ", "ab"),  # spaces at the ends are stripped
        ("cab cab", "cab cab"),
        ("-----", ""),
        ("", ""),
    ],
)
def test_greedy_text(path, text):
    assert decode_one(path).text == text


def test_tokens_keep_spaces_and_frames_mark_first_frame():
    hyp = decode_one("-aa-b b--cc")
    #                 0123456789A
    assert hyp.tokens == [ID["a"], ID["b"], ID[" "], ID["b"], ID["c"]]
    assert hyp.frames == [1, 4, 5, 6, 9]
    assert hyp.text == "ab bc"


def test_score_is_sum_of_best_log_probs():
    hyp = decode_one("a-bb-")
    assert hyp.score == pytest.approx(5 * math.log(P_BEST), rel=1e-6)


def test_lengths_are_respected():
    # Utterance 0 is 4 frames long; frames 4.. hold letters that must be ignored.
    lp = torch.stack([frames("ab-bcca"), frames("c-c-a-b")])
    hyps = greedy_decode(lp, torch.tensor([4, 7]), TOK)
    assert [h.text for h in hyps] == ["abb", "ccab"]
    assert hyps[0].frames == [0, 1, 3]
    assert hyps[0].score == pytest.approx(4 * math.log(P_BEST), rel=1e-6)
    assert hyps[1].score == pytest.approx(7 * math.log(P_BEST), rel=1e-6)


def test_zero_length_gives_empty_hypothesis():
    lp = frames("abc")[None]
    (hyp,) = greedy_decode(lp, torch.tensor([0]), TOK)
    assert (hyp.text, hyp.tokens, hyp.frames, hyp.score) == ("", [], [], 0.0)


def test_argmax_over_close_scores():
    # Unnormalised-looking but valid log-probs: the decision is the per-frame arg max only.
    lp = torch.log_softmax(
        torch.tensor([[0.0, 0.0, 0.1, 0.0, 0.0], [0.2, 0.0, 0.0, 0.19, 0.0]]), dim=-1
    )
    (hyp,) = greedy_decode(lp[None], torch.tensor([2]), TOK)
    assert hyp.text == "a"
    assert hyp.frames == [0]


def test_greedy_decoder_class():
    lp = torch.stack([frames("a-ab"), frames("c--c")])
    lengths = torch.tensor([4, 4])
    decoder = GreedyDecoder(TOK)
    assert isinstance(decoder, Decoder)
    assert [h.text for h in decoder(lp, lengths)] == ["aab", "cc"]
    with pytest.raises(NotImplementedError):
        Decoder(TOK)(lp, lengths)


@pytest.mark.parametrize(
    ("best", "blank", "tokens", "first"),
    [
        ([1, 1, 0, 1, 2, 2, 0], 0, [1, 1, 2], [0, 3, 4]),
        ([0, 0, 0], 0, [], []),
        ([], 0, [], []),
        ([3, 3, 3], 0, [3], [0]),
        ([5, 1, 1, 5, 1, 5, 5, 2], 5, [1, 1, 2], [1, 4, 7]),  # blank need not be 0
        ([0, 2, 0, 2, 2, 0], 0, [2, 2], [1, 3]),
    ],
)
def test_ctc_collapse(best, blank, tokens, first):
    assert ctc_collapse(best, blank) == (tokens, first)
