"""Word pieces as output units: a small sentencepiece BPE vocabulary learnt from the
training transcripts (``data.units=bpe``, ``data.bpe_vocab_size``).

Pieces never cross a word boundary: sentencepiece learns them from the transcripts' words
one at a time (no ``▁`` word-start marker), and the space between words stays a unit of its
own, as in :class:`asr.text.CharTokenizer`. So a piece model spells words with the same
strings a letter model does, and the rest of the toolkit (greedy decoding, the lexicon
beam search, word timestamps) treats it like one whose symbols are longer than a letter.
The learnt model travels in the checkpoint, base64-encoded so that it also fits in an
export's JSON metadata.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable

from asr.text import CharTokenizer, UnknownCharacterError

# sentencepiece's own unknown piece, which it puts first; a piece model has no use for it
# (unknown characters are refused before encoding), so it is not one of the units
_SP_UNKNOWN_ID = 0


def _require_sentencepiece():
    try:
        import sentencepiece
    except ImportError:
        raise ImportError(
            "word-piece units need sentencepiece: pip install 'asr[bpe]' (or sentencepiece)"
        ) from None
    return sentencepiece


class BpeTokenizer(CharTokenizer):
    """Word pieces <-> ids: id 0 the CTC blank, id 1 the word boundary " ", then the pieces
    (every character of the training text among them, so every training word is spelt).

    ``encode("the cats")`` gives the ids of, say, ``the`` ``" "`` ``cat`` ``s``.
    """

    def __init__(self, model: bytes):
        spm = _require_sentencepiece()
        self.model = bytes(model)
        self._sp = spm.SentencePieceProcessor(model_proto=self.model)
        pieces = [
            self._sp.id_to_piece(i)
            for i in range(self._sp.get_piece_size())
            if i != _SP_UNKNOWN_ID and not self._sp.is_control(i)
        ]
        super().__init__([self.BLANK, " ", *pieces])
        self._chars = {p for p in pieces if len(p) == 1}

    @classmethod
    def from_texts(cls, texts: Iterable[str], vocab_size: int = 256) -> BpeTokenizer:
        """Learn about ``vocab_size`` pieces (fewer if the text has too few words to merge)
        from normalised texts; deterministic for the same texts."""
        if vocab_size < 2:
            raise ValueError(f"data.bpe_vocab_size must be at least 2, got {vocab_size}")
        words = [w for text in texts for w in text.split()]
        if not words:
            raise ValueError("no training text to learn word pieces from")
        spm = _require_sentencepiece()
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(words),
            model_writer=model,
            model_type="bpe",
            vocab_size=vocab_size,
            hard_vocab_limit=False,  # a small corpus may have fewer merges to offer
            character_coverage=1.0,  # every character of the training text is a unit
            add_dummy_prefix=False,  # no "▁": the space is a unit of its own
            normalization_rule_name="identity",  # asr.text.normalize_text has done it
            unk_id=_SP_UNKNOWN_ID,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            num_threads=1,
            minloglevel=2,
        )
        return cls(model.getvalue())

    def encode(self, text: str) -> list[int]:
        """Ids of the pieces of normalised ``text``'s words, a space id between words;
        characters not seen in training raise."""
        unknown = self.unknown_characters(text)
        if unknown:
            raise UnknownCharacterError.naming(sorted(unknown)[0], text)
        ids: list[int] = []
        for word in text.split():
            if ids:
                ids.append(self.space_id)
            ids.extend(self._ids[p] for p in self._sp.encode(word, out_type=str))
        return ids

    def unknown_characters(self, text: str) -> set[str]:
        return {c for c in text if c != " " and c not in self._chars}

    def to_dict(self) -> dict:
        return {"type": "bpe", "model": base64.b64encode(self.model).decode("ascii")}

    @classmethod
    def from_dict(cls, state: dict) -> BpeTokenizer:
        if state.get("type") != "bpe":
            raise ValueError(f"unknown tokenizer type {state.get('type')!r}")
        return cls(base64.b64decode(state["model"]))
