"""Phone units: espeak-ng pronunciations, the phone tokenizer, and beam search over them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from asr.beam import BeamDecoder
from asr.config import DecodingConfig
from asr.decoding import greedy_decode, timed_words
from asr.phones import PHONES, PhoneTokenizer, phones_of, pronounce
from asr.text import build_tokenizer, tokenizer_from_dict

FLOOR = 1e-3

# "to" is the likeliest of the three homophones on its own, "two" after "number" and at
# the end of a sentence, "to" before "be".
ARPA = """
\\data\\
ngram 1=8
ngram 2=3

\\1-grams:
-1.0\t<unk>\t0
-99\t<s>\t-0.3
-1.0\t</s>\t0
-0.5\tto\t-0.2
-1.5\ttoo\t-0.2
-1.5\ttwo\t-0.2
-1.2\tnumber\t-0.5
-1.5\tbe\t-0.2

\\2-grams:
-0.05\tnumber two
-0.05\ttwo </s>
-0.1\tto be

\\end\\
"""


@pytest.fixture(scope="module")
def tok() -> PhoneTokenizer:
    return PhoneTokenizer.from_texts(["number two", "to be or not to be", "seven"])


@pytest.fixture
def lm(tmp_path: Path) -> str:
    path = tmp_path / "lm.arpa"
    path.write_text(ARPA.lstrip("\n"), encoding="utf-8")
    return str(path)


def frames_for(tok: PhoneTokenizer, text: str, ambiguous: dict | None = None) -> torch.Tensor:
    """Log-probs [1, T, V] spelling ``text``'s phones, each at 0.9 with a blank after it;
    ``ambiguous`` {phone: {other: prob}} makes those frames uncertain."""
    rows = []
    for i in tok.encode(text):
        row = torch.full((len(tok),), FLOOR)
        named = (ambiguous or {}).get(tok.symbols[i], {tok.symbols[i]: 0.9})
        for symbol, prob in named.items():
            row[tok.symbols.index(symbol)] = prob
        blank = torch.full((len(tok),), FLOOR)
        blank[tok.blank_id] = 0.9
        rows += [row / row.sum(), blank / blank.sum()]
    return torch.stack(rows).log()[None]


def test_espeak_mnemonics_reduce_to_the_inventory():
    nineteen_ninety = "n aI n t i: n h V n d r I d n aI n t i"
    assert phones_of("n_'aI_n_t_i:_n_h_'V_n_d_r_I2_d n_'aI_n_t_i") == tuple(
        nineteen_ninety.split(" ")
    )
    assert phones_of("b_'E_t#_3") == ("b", "E", "t", "3")  # the flap is a t
    assert phones_of("b_'i:_;_I_N") == ("b", "i:", "I", "N")  # markers are not sounds
    assert phones_of("s_'3:_?_n-") == ("s", "3:", "t", "n")  # "certain": glottal t
    assert len(set(PHONES)) == len(PHONES) == 52


def test_pronounce_gives_homophones_one_spelling():
    spelled = pronounce(["two", "too", "to", "seven", "7", "hello"])
    assert spelled["two"] == spelled["too"] == spelled["to"] == ("t", "u:")
    assert spelled["seven"] == spelled["7"] == ("s", "E", "v", "@", "n")
    assert spelled["hello"] == ("h", "@", "l", "oU")
    assert all(set(p) <= set(PHONES) for p in spelled.values())


def test_tokenizer_round_trip_and_unknown_spellings(tok):
    ids = tok.encode("number two")
    assert ids.count(tok.space_id) == 1 and tok.blank_id not in ids
    # the training word with that spelling; of homophones, the more frequent ("to": 2)
    assert tok.decode(ids) == "number to"
    assert tok.decode(tok.encode("seven number")) == "seven number"
    assert tok.decode(tok.encode("hello")) == "/h@loU/"  # no training word spelled so
    assert tok.unknown_characters("number seven") == set()
    assert tok.words["t u:"] == ["to", "two"]  # every training word, most frequent first
    rebuilt = tokenizer_from_dict(tok.to_dict())
    assert isinstance(rebuilt, PhoneTokenizer) and rebuilt.words == tok.words
    assert rebuilt.encode("number two") == ids
    early = tok.to_dict() | {"words": {"t u:": "to"}}  # first phone checkpoints: one word
    assert tokenizer_from_dict(early).words == {"t u:": ["to"]}
    state = tok.to_dict() | {"phones": ["a", "b"]}
    with pytest.raises(ValueError, match="phone inventory"):
        tokenizer_from_dict(state)
    with pytest.raises(ValueError, match="units must be"):
        build_tokenizer("words", ["a"])


def test_greedy_decoding_reads_words_back(tok):
    lp = frames_for(tok, "number seven")
    (hyp,) = greedy_decode(lp, torch.tensor([lp.shape[1]]), tok)
    assert hyp.text == "number seven"


def test_beam_lets_the_lm_choose_among_homophones(tok, lm):
    cfg = DecodingConfig(method="beam", lm_path=lm, lm_weight=1.0, lexicon="lm")
    decoder = BeamDecoder(cfg, tok)
    cases = [("to be", "to be"), ("too be", "to be"), ("number two", "number two"), ("to", "two")]
    for text, expected in cases:
        lp = frames_for(tok, text)
        (hyp,) = decoder(lp, torch.tensor([lp.shape[1]]))
        assert hyp.text == expected, text
    lp = frames_for(tok, "number to")
    (hyp,) = decoder(lp, torch.tensor([lp.shape[1]]))
    assert hyp.text == "number two"  # same sounds: the bigram decides
    words = timed_words(lp[0], hyp.tokens, tok, 0.04, hyp.text.split())
    assert [w.word for w in words] == ["number", "two"]
    assert 0 < words[0].end <= words[1].start


def test_beam_keeps_to_lexicon_spellings(tok, lm):
    # "number" with its first vowel unsure between V (0.5) and a phone no word has there
    lp = frames_for(tok, "number", {"V": {"V": 0.4, "aI": 0.5}})
    (greedy,) = greedy_decode(lp, torch.tensor([lp.shape[1]]), tok)
    assert greedy.text.startswith("/")  # the arg-max path spells no known word
    cfg = DecodingConfig(method="beam", lm_path=lm, lexicon="lm")
    (hyp,) = BeamDecoder(cfg, tok)(lp, torch.tensor([lp.shape[1]]))
    assert hyp.text == "number"
    # without an LM or a lexicon file, the training words are the lexicon
    (hyp,) = BeamDecoder(DecodingConfig(method="beam"), tok)(lp, torch.tensor([lp.shape[1]]))
    assert hyp.text == "number"
    with pytest.raises(ValueError, match="no training words"):
        BeamDecoder(DecodingConfig(method="beam"), PhoneTokenizer())


def test_training_homophones_and_nbest(tok, lm):
    lp = frames_for(tok, "number two")
    n = torch.tensor([lp.shape[1]])
    # no lexicon given: the training words, homophones included ("two" is rarer than "to")
    cfg = DecodingConfig(method="beam", lm_path=lm, lm_weight=1.0, nbest=3)
    (hyp,) = BeamDecoder(cfg, tok)(lp, n)
    assert hyp.text == "number two"
    # the other homophones of the last word are alternatives on the same path
    alternatives = {alt.text: alt for alt in hyp.alternatives}
    assert "number to" in alternatives
    assert alternatives["number to"].tokens == hyp.tokens
    # same path, so the scores differ by the LM alone: log10 P(two | number) P(</s> | two)
    # = -0.1 against P(to | number) P(</s> | to) = (-0.5 - 0.5) + (-0.2 - 1.0) = -2.2
    gap = hyp.score - alternatives["number to"].score
    assert gap == pytest.approx(2.1 * math.log(10), abs=1e-4)


def test_hotword_in_phones(tok, lm):
    lp = frames_for(tok, "seven", {"E": {"E": 0.45, "I": 0.5}})
    cfg = DecodingConfig(method="beam", hotwords=["seven"], hotword_weight=3.0)
    (hyp,) = BeamDecoder(cfg, tok)(lp, torch.tensor([lp.shape[1]]))
    assert hyp.text == "seven"
    # a hotword with homophones: the word itself wins, with or without an LM
    lp = frames_for(tok, "to")
    n = torch.tensor([lp.shape[1]])
    (hyp,) = BeamDecoder(DecodingConfig(method="beam", lexicon="lm", lm_path=lm), tok)(lp, n)
    assert hyp.text == "two"  # the LM's choice for a lone word
    for extra in ({}, {"lm_path": lm, "lexicon": "lm"}):
        cfg = DecodingConfig(method="beam", hotwords=["too"], hotword_weight=5.0, **extra)
        (hyp,) = BeamDecoder(cfg, tok)(lp, n)
        assert hyp.text == "too", extra
