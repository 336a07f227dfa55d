"""Word-piece units: the sentencepiece BPE tokenizer, its round trips, and decoding with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("sentencepiece", reason="word-piece units need sentencepiece (asr[bpe])")

from asr.beam import BeamDecoder  # noqa: E402
from asr.bpe import BpeTokenizer  # noqa: E402
from asr.config import DecodingConfig  # noqa: E402
from asr.decoding import greedy_decode  # noqa: E402
from asr.text import UnknownCharacterError, build_tokenizer, tokenizer_from_dict  # noqa: E402

FLOOR = 1e-3
TEXTS = ["the cat sat on the mat", "the dog ate the cats food", "one two three", "it's mine"] * 20

ARPA = """
\\data\\
ngram 1=7
ngram 2=1

\\1-grams:
-1.0\t<unk>\t0
-99\t<s>\t0
-1.0\t</s>\t0
-0.5\tthe\t0
-1.0\tcat\t0
-1.0\tcats\t0
-1.5\tmat\t0

\\2-grams:
-0.2\tthe cat

\\end\\
"""


@pytest.fixture(scope="module")
def tok() -> BpeTokenizer:
    return BpeTokenizer.from_texts(TEXTS, vocab_size=40)


def frames_for(tok: BpeTokenizer, ids: list[int]) -> torch.Tensor:
    """Log-probs [1, T, V]: each id at 0.9 followed by a blank frame."""
    rows = []
    for i in ids:
        for peak in (i, tok.blank_id):
            row = torch.full((len(tok),), FLOOR)
            row[peak] = 0.9
            rows.append(row / row.sum())
    return torch.stack(rows).log()[None]


def test_pieces_are_longer_than_letters_and_spell_words_back(tok):
    assert tok.symbols[:2] == ["<blank>", " "]
    assert set("thecatsdogmine'") <= set(tok.symbols)  # every training letter is a unit
    assert any(len(s) > 1 for s in tok.symbols[2:])  # and merges were learnt
    for text in ["the cat sat on the mat", "it's mine", "cats", "mad tee"]:
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        # a space between words and nowhere else: pieces stay inside words
        assert ids.count(tok.space_id) == text.count(" ")
    # frequent words become few pieces
    assert len(tok.encode("the")) < 3


def test_unknown_characters_are_refused_by_name(tok):
    assert tok.unknown_characters("the zoo") == {"z"}
    with pytest.raises(UnknownCharacterError, match="'z'"):
        tok.encode("the zoo")


def test_round_trip_through_a_dict_and_json(tok):
    # an export's metadata is JSON: the stored model must survive it
    state = json.loads(json.dumps(tok.to_dict()))
    again = tokenizer_from_dict(state)
    assert isinstance(again, BpeTokenizer)
    assert again.symbols == tok.symbols
    assert again.encode("the cats sat") == tok.encode("the cats sat")
    with pytest.raises(ValueError, match="tokenizer type"):
        BpeTokenizer.from_dict({"type": "char", "symbols": tok.symbols})


def test_build_tokenizer_learns_the_asked_size():
    small = build_tokenizer("bpe", TEXTS, bpe_vocab_size=30)
    large = build_tokenizer("bpe", TEXTS, bpe_vocab_size=60)
    assert len(small) < len(large)
    assert len(large) <= 60 + 1  # sentencepiece's unknown piece is swapped for the space
    with pytest.raises(ValueError, match="bpe_vocab_size"):
        BpeTokenizer.from_texts(TEXTS, vocab_size=1)
    with pytest.raises(ValueError, match="no training text"):
        BpeTokenizer.from_texts(["", " "])


def test_greedy_and_lexicon_beam_read_pieces(tok, tmp_path: Path):
    lp = frames_for(tok, tok.encode("the cats"))
    (hyp,) = greedy_decode(lp, torch.tensor([lp.shape[1]]), tok)
    assert hyp.text == "the cats"
    # "mat" spelt with pieces other than its own segmentation still reads as "mat"; a
    # lexicon of the LM's words rules out what no word spells ("the ma")
    other = [tok.symbols.index(c) for c in "mat"]
    assert other != tok.encode("mat")  # letter by letter is not how "mat" is encoded
    lm = tmp_path / "lm.arpa"
    lm.write_text(ARPA.lstrip("\n"), encoding="utf-8")
    cfg = DecodingConfig(method="beam", lm_path=str(lm), lm_weight=0.5, lexicon="lm")
    decoder = BeamDecoder(cfg, tok)
    ids = [*tok.encode("the"), tok.space_id, *other]
    lp = frames_for(tok, ids)
    (hyp,) = decoder(lp, torch.tensor([lp.shape[1]]))
    assert hyp.text == "the mat"
    truncated = frames_for(tok, [*tok.encode("the"), tok.space_id, *other[:2]])
    (hyp,) = decoder(truncated, torch.tensor([truncated.shape[1]]))
    assert hyp.text != "the ma"
