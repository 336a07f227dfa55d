"""Tests for asr.text: the normaliser's documented rules and the character tokenizer."""

import pytest

from asr.text import CharTokenizer, UnknownCharacterError, normalize_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # 1. typographic apostrophes become "'"
        ("don\u2019t", "don't"),
        ("don\u2018t", "don't"),
        ("don\u02bct", "don't"),
        ("don`t", "don't"),
        ("don't", "don't"),
        # 2. lowercase
        ("HELLO World", "hello world"),
        # 3. hyphens, dashes and slashes become spaces
        ("well-known", "well known"),
        ("pre\u2010war", "pre war"),  # hyphen
        ("1990\u20131995", "1990 1995"),  # en dash
        ("wait\u2014what", "wait what"),  # em dash
        ("and/or", "and or"),
        ("back\\slash", "back slash"),
        ("snake_case", "snake case"),
        ("a -- b", "a b"),
        # 4. other punctuation is dropped
        ("Hello, world!", "hello world"),
        ("what?! no.", "what no"),
        ("(a) [b] {c}; d: e", "a b c d e"),
        ("50% off & more", "50 off more"),
        # 5. apostrophes used as quotes are dropped, inner ones kept
        ("'tis", "tis"),
        ("the dogs' bone", "the dogs bone"),
        ("'quoted words'", "quoted words"),
        ("\u2018single\u2019", "single"),
        ('"double quotes"', "double quotes"),
        ("\u201ccurly double\u201d", "curly double"),
        ("rock 'n' roll", "rock n roll"),
        ("it's 3 o'clock", "it's 3 o'clock"),
        ("the '90s", "the 90s"),
        # digits kept
        ("room 101", "room 101"),
        # 6. white space collapses, ends stripped
        ("  a \t b\n\nc  ", "a b c"),
        ("a , b", "a b"),
        # accented and non-Latin letters are letters
        ("Caf\u00e9 na\u00efve \u00dcber", "caf\u00e9 na\u00efve \u00fcber"),
        ("Cafe\u0301", "caf\u00e9"),  # NFKC composes e + combining acute
        ("\u0395\u039b\u039b\u0391\u0394\u0391", "\u03b5\u03bb\u03bb\u03b1\u03b4\u03b1"),
        # NFKC folds compatibility forms
        ("\ufb01ne", "fine"),  # fi ligature
        ("\uff21\uff22\uff11", "ab1"),  # full-width letters and digit
        ("", ""),
        ("   ", ""),
        ("?!...", ""),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_acute_accent_is_an_apostrophe():
    assert normalize_text("don\u00b4t") == "don't"


def test_fraction_slash_separates_digits():
    assert normalize_text("\u00bd") == "1 2"
    assert normalize_text("3\u20444") == "3 4"


IDEMPOTENCE_CASES = [
    "Hello, World!",
    "don\u2019t stop",
    "'tis the season's end'",
    "a '' b",
    "a''b",
    "x ' y",
    "\u2019\u2019quoted\u2019\u2019",
    "rock 'n' roll",
    "well--known / path\\to_file",
    "\u0130stanbul",
    "Stra\u00dfe \u1e9e",
    "\u01c4\u01c5\u01c6 \u01c7",
    "\ufb00 \ufb01 \u2163",
    "caf\u00e9 e\u0301",
    "\u00bd \u00b2 \u2153",
    "  spaces\t\tand\nnewlines  ",
    "\u03a3\u0391\u03a3",
    "\u00b4a\u00b4",
    "",
]


@pytest.mark.parametrize("text", IDEMPOTENCE_CASES)
def test_normalize_is_idempotent(text):
    once = normalize_text(text)
    assert normalize_text(once) == once


def test_normalized_text_alphabet():
    # Whatever goes in, only lowercase letters, digits, inner apostrophes and single spaces
    # come out.
    for text in IDEMPOTENCE_CASES:
        out = normalize_text(text)
        assert out == out.strip()
        assert "  " not in out
        for i, ch in enumerate(out):
            assert ch.isalnum() or ch in " '", (text, out)
            if ch == "'":
                assert out[i - 1].isalnum() and out[i + 1].isalnum(), (text, out)
            if ch.isalpha():
                assert ch == ch.lower()


# ------------------------------------------------------------------ tokenizer


def test_blank_is_id_zero():
    tok = CharTokenizer.from_texts(["ab"])
    assert tok.blank_id == 0
    assert tok.symbols[0] == CharTokenizer.BLANK
    assert tok.encode("a")[0] != 0


def test_from_texts_sorted_and_has_space():
    tok = CharTokenizer.from_texts(["the cab", "bed", "zebra's"])
    expected = sorted(set("the cab" + "bed" + "zebra's") | {" "})
    assert tok.symbols == [CharTokenizer.BLANK, *expected]
    assert len(tok) == len(expected) + 1
    assert tok.symbols[tok.space_id] == " "
    # Reproducible: the order of the texts does not matter.
    assert CharTokenizer.from_texts(["zebra's", "bed", "the cab"]).symbols == tok.symbols


def test_from_texts_without_spaces_still_has_space():
    tok = CharTokenizer.from_texts(["abc"])
    assert tok.symbols == [CharTokenizer.BLANK, " ", "a", "b", "c"]


def test_encode_ids():
    tok = CharTokenizer.from_texts(["abc"])  # <blank>, ' ', a, b, c
    assert tok.encode("cab a") == [4, 2, 3, 1, 2]
    assert tok.encode("") == []


@pytest.mark.parametrize("text", ["hello world", "don't", "a", "zz top", "caf\u00e9 2"])
def test_encode_decode_round_trip(text):
    tok = CharTokenizer.from_texts(["hello world", "don't", "zz top", "caf\u00e9 2"])
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert all(0 < i < len(tok) for i in ids)
    assert tok.decode(ids) == text


def test_decode_skips_blanks_and_tidies_spaces():
    tok = CharTokenizer.from_texts(["ab"])
    a, b, space = tok.encode("a")[0], tok.encode("b")[0], tok.space_id
    assert tok.decode([0, a, 0, 0, b, 0]) == "ab"
    assert tok.decode([space, a, space, space, b, space]) == "a b"
    assert tok.decode([a, a]) == "aa"  # no CTC collapsing here


def test_unknown_character_names_it():
    tok = CharTokenizer.from_texts(["abc"])
    with pytest.raises(UnknownCharacterError) as info:
        tok.encode("abz")
    assert "'z'" in str(info.value)
    assert issubclass(UnknownCharacterError, ValueError)
    assert tok.unknown_characters("abzq z") == {"z", "q"}
    assert tok.unknown_characters("cab") == set()


def test_dict_round_trip():
    tok = CharTokenizer.from_texts(["hello there", "it's"])
    state = tok.to_dict()
    assert state["type"] == "char"
    again = CharTokenizer.from_dict(state)
    assert again.symbols == tok.symbols
    assert again.encode("hello it's") == tok.encode("hello it's")
    # The state is a copy, not a view of the tokenizer's list.
    state["symbols"].append("#")
    assert "#" not in tok.symbols


def test_from_dict_rejects_unknown_type():
    with pytest.raises(ValueError, match="bpe"):
        CharTokenizer.from_dict({"type": "bpe", "symbols": ["<blank>", "a"]})


def test_blank_is_prepended_and_symbols_unique():
    assert CharTokenizer(["a", "b"]).symbols == [CharTokenizer.BLANK, "a", "b"]
    with pytest.raises(ValueError):
        CharTokenizer([CharTokenizer.BLANK, "a", "a"])
