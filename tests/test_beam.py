"""Tests for asr.beam on hand-built CTC log-prob matrices and toy ARPA LMs."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch

from asr.beam import MAX_HOTWORD_WEIGHT, BeamDecoder, read_arpa_unigrams
from asr.config import DecodingConfig
from asr.decoding import greedy_decode, timed_words
from asr.evaluate import make_decoder
from asr.text import CharTokenizer

pytest.importorskip("kenlm")

TOK = CharTokenizer.from_texts(["cat cab bat a"])
ID = {s: i for i, s in enumerate(TOK.symbols)}
ID["-"] = TOK.blank_id
FLOOR = 1e-3  # probability of every symbol not named in a frame

# ln P in log10 as ARPA writes it: "cat" is likely, "cab" rare.
TOY_ARPA = """
\\data\\
ngram 1=7
ngram 2=2

\\1-grams:
-1.0\t<unk>\t0
-99\t<s>\t-0.3
-1.0\t</s>\t0
-0.7\tcat\t-0.2
-3.0\tcab\t-0.2
-1.0\ta\t-0.2
-1.2\tbat\t-0.2

\\2-grams:
-0.2\t<s> a
-0.1\ta cat

\\end\\
"""


def emissions(frames: list) -> torch.Tensor:
    """Log-probs [T, V]: each frame a symbol ("-" blank) at 0.9, or {symbol: prob} dict."""
    rows = []
    for frame in frames:
        named = {frame: 0.9} if isinstance(frame, str) else frame
        row = torch.full((len(TOK),), FLOOR)
        for symbol, prob in named.items():
            row[ID[symbol]] = prob
        rows.append(row / row.sum())
    return torch.stack(rows).log()


def spell(text: str) -> list:
    """Frames for a text, a blank after every symbol (so doubled letters survive)."""
    return [f for ch in text for f in (ch, "-")]


def decode(frames: list, **cfg) -> list:
    lp = emissions(frames)[None]
    decoder = BeamDecoder(DecodingConfig(method="beam", **cfg), TOK)
    return decoder(lp, torch.tensor([lp.shape[1]]))


@pytest.fixture
def toy_lm(tmp_path: Path) -> str:
    path = tmp_path / "toy.arpa"
    path.write_text(TOY_ARPA.lstrip("\n"), encoding="utf-8")
    return str(path)


# "c a ? " where ? is b (0.5) or t (0.4): acoustics lean to "cab".
AMBIGUOUS = ["c", "-", "a", "-", {"b": 0.5, "t": 0.4}, "-"]


def test_equals_greedy_when_one_path_dominates():
    rng = random.Random(0)
    for _ in range(20):
        path = "".join(rng.choice("-- abct") for _ in range(rng.randint(0, 25)))
        lp = emissions(list(path))[None]
        length = torch.tensor([lp.shape[1]])
        (greedy,) = greedy_decode(lp, length, TOK)
        (beam,) = BeamDecoder(DecodingConfig(method="beam", beam_size=8), TOK)(lp, length)
        assert beam.text == greedy.text
        # the beam sums the paths of its prefix, so it is at least the best path's score
        assert beam.score >= greedy.score - 1e-4


def test_frames_mark_first_frame_of_each_token():
    (hyp,) = decode(["-", "c", "c", "-", "a", " ", "-", "b", "-"])
    assert hyp.text == "ca b"
    assert hyp.frames == [1, 4, 5, 7]
    assert [TOK.symbols[t] for t in hyp.tokens] == ["c", "a", " ", "b"]


def test_lm_that_prefers_a_word_changes_an_ambiguous_decision(toy_lm):
    assert decode(AMBIGUOUS)[0].text == "cab"
    assert decode(AMBIGUOUS, lm_path=toy_lm, lm_weight=1.0)[0].text == "cat"
    assert decode(AMBIGUOUS, lm_path=toy_lm, lm_weight=0.0)[0].text == "cab"


def test_lm_scores_words_in_context(toy_lm):
    # "a ca?": the bigram "a cat" adds to the unigram preference
    (hyp,) = decode(spell("a ") + AMBIGUOUS, lm_path=toy_lm, lm_weight=0.5)
    assert hyp.text == "a cat"


def test_word_bonus_trades_against_spaces():
    # a space frame the model is unsure of (0.3 vs blank 0.6): one word or two?
    frames = spell("a") + [{"-": 0.6, " ": 0.3}] + spell("a")
    assert decode(frames)[0].text == "aa"
    assert decode(frames, word_bonus=2.0)[0].text == "a a"


def test_blank_penalty_keeps_a_symbol_the_blank_outweighs():
    # "ca" then a frame of blank 0.6 / t 0.35: the blank wins by ln(0.6 / 0.35) = 0.54 nats
    frames = spell("ca") + [{"-": 0.6, "t": 0.35}, "-"]
    assert decode(frames)[0].text == decode(frames, blank_penalty=0.0)[0].text == "ca"
    assert decode(frames, blank_penalty=0.4)[0].text == "ca"
    assert decode(frames, blank_penalty=1.0)[0].text == "cat"
    # a clear blank stays a blank: 0.9 against 0.001 is 6.8 nats, more than 2
    assert decode(spell("ca"), blank_penalty=2.0)[0].text == "ca"
    for bad in (float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match="blank_penalty"):
            decode(frames, blank_penalty=bad)


def test_set_weights_reaches_worker_processes():
    """Tuning changes the penalty between searches; forked workers must not keep the old one."""
    frames = spell("ca") + [{"-": 0.6, "t": 0.35}, "-"]
    lp = emissions(frames)
    batch, lengths = torch.stack([lp, lp]), torch.tensor([lp.shape[0]] * 2)
    with BeamDecoder(DecodingConfig(method="beam"), TOK, workers=2) as decoder:
        assert [h.text for h in decoder(batch, lengths)] == ["ca", "ca"]
        decoder.set_weights(0.0, 0.0, blank_penalty=1.0)
        assert [h.text for h in decoder(batch, lengths)] == ["cat", "cat"]
        decoder.set_weights(0.0, 0.0)  # the penalty stays unless given
        assert decoder.cfg.blank_penalty == 1.0
        with pytest.raises(ValueError, match="blank_penalty"):
            decoder.set_weights(0.0, 0.0, float("nan"))


def test_lexicon_keeps_out_of_lexicon_words_out(tmp_path, toy_lm):
    frames = spell("cbt a")  # clearly "cbt": not a word
    assert decode(frames)[0].text == "cbt a"
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("cat c a t\ncab\na\n", encoding="utf-8")
    (hyp,) = decode(frames, lexicon=str(lexicon))
    assert hyp.text.split() and set(hyp.text.split()) <= {"cat", "cab", "a"}
    assert hyp.text == "cat a"  # one letter off is the nearest lexicon spelling
    (hyp,) = decode(frames, lexicon="lm", lm_path=toy_lm)
    assert set(hyp.text.split()) <= {"cat", "cab", "a", "bat"}


def test_lexicon_with_no_complete_word_keeps_whole_words(tmp_path):
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("cat\n", encoding="utf-8")
    (hyp,) = decode(["c", "a"], lexicon=str(lexicon))  # two frames cannot hold "cat"
    assert hyp.text == ""
    (hyp,) = decode(["c", "a", "-"], lexicon=str(lexicon))  # three can, at any cost
    assert hyp.text == "cat"


def test_hotword_picks_the_boosted_word_without_splitting_neighbours():
    frames = spell("a bat ") + AMBIGUOUS + spell(" a")
    assert decode(frames)[0].text == "a bat cab a"
    (hyp,) = decode(frames, hotwords=["CAT"], hotword_weight=2.0)
    assert hyp.text == "a bat cat a"
    assert hyp.text.split() == ["a", "bat", "cat", "a"]


def test_hotword_needs_word_boundaries():
    # "acat" holds "cat", but boosting must not split it (space frames are possible but
    # unlikely) nor earn a bonus inside another word
    frames = ["a", "-", {"-": 0.6, " ": 0.3}, "c", "-", "a", "-", "t", "-"]
    assert decode(frames)[0].text == "acat"
    assert decode(frames, hotwords=["cat"], hotword_weight=0.5)[0].text == "acat"


def test_hotword_weight_is_bounded():
    strong = ["c", "-", "a", "-", "b", "-"]  # "cab" at 0.9 against "t" at 0.001
    assert decode(strong, hotwords=["cat"], hotword_weight=MAX_HOTWORD_WEIGHT / 2)[0].text == "cab"
    for bad in (-0.1, MAX_HOTWORD_WEIGHT + 1):
        with pytest.raises(ValueError, match="hotword_weight"):
            decode(strong, hotwords=["cat"], hotword_weight=bad)


def test_nbest_is_sorted_by_score_and_distinct(toy_lm):
    (hyp,) = decode(AMBIGUOUS, nbest=4, beam_size=8, lm_path=toy_lm, lm_weight=0.3)
    ranked = [hyp, *hyp.alternatives]
    assert 2 <= len(ranked) <= 4
    scores = [h.score for h in ranked]
    assert scores == sorted(scores, reverse=True)
    assert len({h.text for h in ranked}) == len(ranked)
    assert {"cat", "cab"} <= {h.text for h in ranked}


def test_nbest_scores_without_lm_are_path_sums():
    (hyp,) = decode(AMBIGUOUS, nbest=2)
    assert [hyp.text, hyp.alternatives[0].text] == ["cab", "cat"]
    # both texts share every frame but the ambiguous one: their scores differ by ln(.5/.4)
    assert hyp.score - hyp.alternatives[0].score == pytest.approx(math.log(0.5 / 0.4), abs=1e-3)


def test_batch_lengths_and_workers_agree():
    rng = random.Random(1)
    paths = ["".join(rng.choice("-- abct") for _ in range(rng.randint(0, 30))) for _ in range(7)]
    longest = max(len(p) for p in paths)
    lp = torch.stack([emissions(list(p.ljust(longest, "a"))) for p in paths])
    lengths = torch.tensor([len(p) for p in paths])
    cfg = DecodingConfig(method="beam", beam_size=4)
    serial = BeamDecoder(cfg, TOK)(lp, lengths)
    with BeamDecoder(cfg, TOK, workers=2) as decoder:
        parallel = decoder(lp, lengths)
    assert [h.text for h in parallel] == [h.text for h in serial]
    assert [h.score for h in parallel] == pytest.approx([h.score for h in serial])
    assert [h.text for h in serial] == [h.text for h in greedy_decode(lp, lengths, TOK)]


def test_make_decoder_and_bad_settings(tmp_path):
    assert isinstance(make_decoder(DecodingConfig(method="beam"), TOK), BeamDecoder)
    with pytest.raises(ValueError, match="not found"):
        BeamDecoder(DecodingConfig(method="beam", lm_path=str(tmp_path / "none.arpa")), TOK)
    garbage = tmp_path / "garbage.arpa"
    garbage.write_text("not an lm\n")
    with pytest.raises(ValueError, match="garbage.arpa"):
        BeamDecoder(DecodingConfig(method="beam", lm_path=str(garbage)), TOK)


def test_read_arpa_unigrams(toy_lm):
    unigrams = read_arpa_unigrams(toy_lm)
    assert set(unigrams) == {"cat", "cab", "a", "bat"}
    assert unigrams["cat"] == pytest.approx(-0.7 * math.log(10))


# --- word timestamps and confidences ---------------------------------------------------------
def test_timed_words_exact_frames_for_greedy_and_beam():
    #        0    1    2    3    4    5    6    7    8    9
    path = ["-", "c", "a", "a", "-", "t", " ", "-", "a", "-"]
    lp = emissions(path)
    (greedy,) = greedy_decode(lp[None], torch.tensor([len(path)]), TOK)
    (beam,) = decode(path)
    for hyp in (greedy, beam):
        words = timed_words(lp, hyp.tokens, TOK, frame_seconds=0.02)
        assert [w.word for w in words] == ["cat", "a"]
        times = [t for w in words for t in (w.start, w.end)]
        assert times == pytest.approx([0.01, 0.11, 0.15, 0.17])  # frame centres +- half
        # every frame's path symbol has posterior 0.9 / (0.9 + 5 * 0.001)
        assert [w.confidence for w in words] == pytest.approx([0.9 / 0.905] * 2)


def test_timed_words_confidence_is_the_mean_posterior_of_the_word_frames():
    frames = ["c", {"a": 0.5, "b": 0.4}, "t", "-", " ", "a"]
    lp = emissions(frames)
    (hyp,) = greedy_decode(lp[None], torch.tensor([len(frames)]), TOK)
    assert hyp.text == "cat a"
    cat, a = timed_words(lp, hyp.tokens, TOK, frame_seconds=0.04)
    p = [0.9 / 0.905, 0.5 / (0.9 + 4 * 0.001), 0.9 / 0.905]
    assert cat.confidence == pytest.approx(sum(p) / 3)
    assert (cat.start, cat.end, a.start, a.end) == pytest.approx((0.0, 0.1, 0.18, 0.22))


def test_timed_words_follow_the_beam_choice_not_the_arg_max(toy_lm):
    lp = emissions(AMBIGUOUS)
    (hyp,) = decode(AMBIGUOUS, lm_path=toy_lm, lm_weight=1.0)
    (word,) = timed_words(lp, hyp.tokens, TOK, frame_seconds=0.1)
    assert word.word == "cat"
    assert (word.start, word.end) == pytest.approx((0.0, 0.45))
    assert word.confidence < 0.9  # the "t" frame had posterior 0.4


def test_timed_words_of_empty_and_space_only_hypotheses():
    lp = emissions(["-", " ", "-"])
    assert timed_words(lp, [], TOK, 0.02) == []
    assert timed_words(lp, [ID[" "]], TOK, 0.02) == []


def _build_binary() -> str | None:
    """KenLM's build_binary: $ASR_KENLM_BUILD_BINARY, beside this Python (make test puts
    it there, scripts/build_kenlm_tools.sh), or on PATH."""
    import os
    import shutil
    import sys

    beside = Path(sys.executable).parent / "build_binary"
    if os.environ.get("ASR_KENLM_BUILD_BINARY"):
        return os.environ["ASR_KENLM_BUILD_BINARY"]
    return str(beside) if beside.is_file() else shutil.which("build_binary")


@pytest.mark.skipif(
    _build_binary() is None,
    reason="KenLM's build_binary is not installed (pip's kenlm has none: "
    "scripts/build_kenlm_tools.sh compiles it)",
)
def test_a_kenlm_binary_lm_decodes_as_its_arpa_does(tmp_path, toy_lm):
    import subprocess

    binary = tmp_path / "toy.bin"
    subprocess.run([_build_binary(), toy_lm, str(binary)], check=True, capture_output=True)
    for frames in (AMBIGUOUS, spell("a ") + AMBIGUOUS):
        from_arpa = decode(frames, lm_path=toy_lm, lm_weight=0.7, nbest=3)
        from_binary = decode(frames, lm_path=str(binary), lm_weight=0.7, nbest=3)
        assert from_binary[0].text == from_arpa[0].text
        assert from_binary[0].score == pytest.approx(from_arpa[0].score, abs=1e-3)
        assert [a.text for a in from_binary[0].alternatives] == [
            a.text for a in from_arpa[0].alternatives
        ]
    with pytest.raises(ValueError, match='lexicon="lm" needs an ARPA LM'):
        decode(AMBIGUOUS, lm_path=str(binary), lexicon="lm")
