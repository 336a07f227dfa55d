"""Tests for asr.metrics against jiwer, plus the empty-reference convention."""

import random

import jiwer
import pytest

from asr.metrics import ErrorCounts, cer, char_counts, wer, word_counts

WORDS = ["the", "cat", "sat", "on", "a", "mat", "hat", "that", "at", "cats"]


def random_pairs(seed, count=40, allow_empty_hyp=True):
    rng = random.Random(seed)
    refs, hyps = [], []
    for _ in range(count):
        ref = [rng.choice(WORDS) for _ in range(rng.randint(1, 9))]
        hyp = list(ref)
        for _ in range(rng.randint(0, 4)):  # random edits
            op = rng.choice("sdi")
            if op == "s" and hyp:
                hyp[rng.randrange(len(hyp))] = rng.choice(WORDS)
            elif op == "d" and hyp:
                del hyp[rng.randrange(len(hyp))]
            elif op == "i":
                hyp.insert(rng.randint(0, len(hyp)), rng.choice(WORDS))
        if allow_empty_hyp and rng.random() < 0.15:
            hyp = []
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp))
    return refs, hyps


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_word_level_matches_jiwer(seed):
    refs, hyps = random_pairs(seed)
    assert "" in hyps or seed != 0  # seed 0 includes empty hypotheses
    expected = jiwer.process_words(refs, hyps)
    counts = word_counts(refs, hyps)
    assert (counts.substitutions, counts.deletions, counts.insertions, counts.hits) == (
        expected.substitutions,
        expected.deletions,
        expected.insertions,
        expected.hits,
    )
    assert counts.reference_length == sum(len(r.split()) for r in refs)
    assert wer(refs, hyps) == pytest.approx(jiwer.wer(refs, hyps), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_char_level_matches_jiwer(seed):
    refs, hyps = random_pairs(seed)
    expected = jiwer.process_characters(refs, hyps)
    counts = char_counts(refs, hyps)
    assert (counts.substitutions, counts.deletions, counts.insertions, counts.hits) == (
        expected.substitutions,
        expected.deletions,
        expected.insertions,
        expected.hits,
    )
    assert counts.reference_length == sum(len(r) for r in refs)  # spaces count
    assert cer(refs, hyps) == pytest.approx(jiwer.cer(refs, hyps), abs=1e-12)


def test_corpus_rate_is_summed_not_averaged():
    refs = ["a b c d", "e"]
    hyps = ["a b c d", "x"]
    # 1 error over 5 words, not mean(0/4, 1/1) = 0.5
    assert wer(refs, hyps) == pytest.approx(1 / 5)


def test_hand_counted_example():
    counts = word_counts(["the cat sat on the mat"], ["the cat sat the hat on"])
    # Best alignment: the cat sat [on del] the mat->hat [on ins]: 1 S, 1 D, 1 I, 4 hits
    assert counts.errors == 3
    assert counts.hits + counts.substitutions + counts.deletions == 6
    assert wer(["the cat sat on the mat"], ["the cat sat the hat on"]) == pytest.approx(3 / 6)


def test_all_empty_hypotheses_are_deletions():
    counts = word_counts(["a b c", "d e"], ["", ""])
    assert (counts.substitutions, counts.deletions, counts.insertions, counts.hits) == (0, 5, 0, 0)
    assert wer(["a b c", "d e"], ["", ""]) == 1.0
    assert cer(["ab", "c"], ["", ""]) == 1.0


def test_empty_references_count_insertions():
    # Utterance 1 has an empty reference: its 3 hypothesis words are insertions.
    refs = ["a b", "", "c"]
    hyps = ["a b", "x y z", "c"]
    counts = word_counts(refs, hyps)
    assert (counts.substitutions, counts.deletions, counts.insertions, counts.hits) == (0, 0, 3, 3)
    assert wer(refs, hyps) == pytest.approx(3 / 3)
    # Characters: "x y z" is 5 characters, spaces included.
    chars = char_counts(refs, hyps)
    assert (chars.insertions, chars.hits) == (5, 4)
    assert cer(refs, hyps) == pytest.approx(5 / 4)


def test_only_empty_references():
    assert word_counts([""], ["hello there"]).insertions == 2
    assert word_counts(["  "], [""]).errors == 0
    assert wer([""], [""]) == 0.0
    assert wer([""], ["one"]) == 1.0  # divided by max(0, 1)


@pytest.mark.parametrize("func", [wer, cer, word_counts, char_counts])
def test_length_mismatch_raises(func):
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        func(["a", "b"], ["a"])


def test_error_counts_properties():
    counts = ErrorCounts(substitutions=2, deletions=1, insertions=3, hits=7)
    assert counts.reference_length == 10
    assert counts.errors == 6
    assert counts.rate == pytest.approx(0.6)
    assert counts.to_dict() == {
        "substitutions": 2,
        "deletions": 1,
        "insertions": 3,
        "hits": 7,
        "errors": 6,
        "reference_length": 10,
    }
    assert ErrorCounts().rate == 0.0
