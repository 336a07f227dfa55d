"""CTC prefix beam search with a word n-gram LM, a lexicon, hotwords and n-best lists.

``BeamDecoder(cfg, tokenizer)(log_probs [B, T, V], lengths [B]) -> list[Hypothesis]``,
chosen by ``decoding.method=beam``. Settings (:class:`asr.config.DecodingConfig`):

- ``beam_size``: prefixes kept after each frame.
- ``lm_path``: a word n-gram, ARPA or KenLM binary, read by the ``kenlm`` package. A prefix
  scores ``log P_ctc(prefix) + lm_weight * ln P_lm(words) + word_bonus * words`` (+ hotword
  bonuses, - blank_penalty for each frame its paths give to the blank). The LM scores a
  word when the space after it (or the end of the utterance) arrives; meanwhile an
  unfinished word is charged an estimate, the best unigram log-prob of the LM words it can
  still become (or the LM's ``<unk>`` log-prob when it can become none), so that prefixes
  mid-word and just past a word compete fairly.
- ``lexicon``: "" decodes lexicon-free (any spelling; a phone model, whose phones spell no
  word by themselves, keeps to its training words); a file with one word per line (first
  column; extra columns, e.g. spellings, ignored) or ``"lm"`` (the ARPA file's words) admits
  only those words. A phone model spells each by espeak-ng's pronunciation
  (:mod:`asr.phones`); words that sound alike are all tried, and the LM tells them apart.
- ``hotwords`` / ``hotword_weight``: words or phrases to favour. A whole hotword that ends
  at a word boundary adds ``hotword_weight`` (natural log units: a factor of e**weight on
  its probability) and never more, however long it is; while it is being spelled it earns
  the bonus in proportion to the characters (phones) matched so far, and loses it again if
  the word turns out different. The weight must lie in [0, MAX_HOTWORD_WEIGHT]. In a lexicon
  the hotwords are added to it; the LM still scores them as it scores any word. A phone
  model matches a hotword by its sound; at its end only the word itself, not a homophone,
  earns the bonus.
- ``blank_penalty``: subtracted from the blank's log-prob in every frame (natural log). A
  CTC model spends most frames on the blank, and a phone it half heard often loses its
  frame to it; the penalty keeps such paths in the beam for the LM to judge (1-2 nats
  helped the real-voice recipe; 0 leaves the model's scores as they are, and a negative
  value favours the blank). Scores then include it: compare them only at one penalty.
  Greedy decoding ignores it.
- ``prior_weight``: subtracts ``prior_weight * log prior`` (centred on the median unit's)
  from each phone's (letter's) log-prob before the search, the blank and the word boundary
  left alone, the priors being the model's mean posteriors that the checkpoint carries
  (:mod:`asr.priors`, ``asr-lm priors``); 0 (the default) leaves the log-probs as they are.
- ``nbest``: hypotheses per utterance; the best is returned, the others, best first, in its
  ``alternatives``. Scores are the decoding scores above, finished with the LM's ``</s>``.

Why not torchaudio's flashlight decoder (measured here, flashlight-text 0.0.7): its
lexicon-free mode takes only token-level LMs (a word n-gram there needs a Python LM called
per token: 3.2x slower), it has no hotwords, no word bonus without a lexicon, and its
lexicon mode either lets words run together without a space or, with the space in each
spelling, charges the last word a space the model never emitted; its decode also holds the
GIL, so threads do not help. This search is plain Python over the few symbols above
TOKEN_MIN_LOGP in each frame.

Spaces: prefixes are kept in a canonical form (no leading or doubled spaces), so paths that
differ only in repeated spaces add up to one prefix.

Both cores: ``BeamDecoder(..., workers=2)`` decodes the utterances of a batch in a pool of
forked worker processes (Python threads would share one core).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asr.config import DecodingConfig
from asr.decoding import Decoder, Hypothesis, ctc_align
from asr.phones import PhoneTokenizer
from asr.priors import prior_offsets
from asr.text import Tokenizer, normalize_text

MAX_HOTWORD_WEIGHT = 10.0
TOKEN_MIN_LOGP = -8.0  # symbols less likely than this in a frame are not tried (p < 3e-4)
PHONE_CHAR_BASE = 0xE000  # phone id i is spelled chr(PHONE_CHAR_BASE + i): Unicode private use
BEAM_THRESHOLD = 30.0  # prefixes further than this behind the best are dropped (nats)
LN10 = math.log(10.0)
NEG_INF = float("-inf")


def _log_add(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    if b == NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


class WordLM:
    """A word n-gram (ARPA or KenLM binary) through ``kenlm``; scores in natural log units."""

    def __init__(self, path: str | Path):
        try:
            import kenlm
        except ImportError as exc:
            raise ValueError("decoding with an LM needs the kenlm package") from exc
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: language model not found")
        config = kenlm.Config()
        config.show_progress = False
        config.arpa_complain = kenlm.ARPALoadComplain.NONE
        try:
            self.model = kenlm.Model(str(path), config)
        except (OSError, RuntimeError) as exc:
            raise ValueError(f"{path}: not a readable ARPA or KenLM binary LM ({exc})") from None
        self._kenlm = kenlm
        self.unigrams = read_arpa_unigrams(path)  # None for a binary LM: its words are hidden
        self.unk_logp = self._score(self.begin(), "<unk>")[1]
        self._cache: dict[tuple, tuple] = {}

    def begin(self):
        state = self._kenlm.State()
        self.model.BeginSentenceWrite(state)
        return state

    def _score(self, state, word: str) -> tuple[object, float]:
        out = self._kenlm.State()
        return out, self.model.BaseScore(state, word, out) * LN10

    def score(self, state, word: str) -> tuple[object, float]:
        """(state after ``word``, ln P(word | state)), cached: prefixes share histories."""
        key = (state, word)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = self._score(state, word)
        return hit

    def finish(self, state) -> float:
        """ln P(</s> | state)."""
        return self.score(state, "</s>")[1]


def read_arpa_unigrams(path: str | Path) -> dict[str, float] | None:
    """{word: ln P(word)} from an ARPA file's 1-grams (no <s>, </s>, <unk>); None if binary."""
    if not _starts_arpa(path):
        return None
    unigrams: dict[str, float] = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        inside = False
        for line in handle:
            line = line.strip()
            if line == "\\1-grams:":
                inside = True
            elif inside and line.startswith("\\"):
                break
            elif inside and line:
                fields = line.split()
                if len(fields) >= 2 and fields[1] not in ("<s>", "</s>", "<unk>"):
                    unigrams[fields[1]] = float(fields[0]) * LN10
    return unigrams


def _starts_arpa(path: str | Path) -> bool:
    """True when the first non-blank line of the file is ``\\data\\`` (an ARPA text file)."""
    with open(path, "rb") as handle:
        for raw in handle:
            if raw.strip():
                return raw.strip() == b"\\data\\"
    return False


def read_lexicon(path: str | Path) -> set[str]:
    """Words of a lexicon file: the first column of each non-empty line, normalised."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: lexicon not found")
    words = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            words.add(normalize_text(line.split()[0]))
    words.discard("")
    return words


@dataclass(eq=False, slots=True)
class _Prefix:
    """A canonical prefix: everything about it that does not depend on the frame."""

    parent: _Prefix | None
    token: int  # last token (-1 for the empty prefix)
    partial: str  # spelling of the unfinished word ("" at the start and after a space)
    lm_state: object
    fixed: float  # LM, word bonus and hotword scores of finished words
    ahead: float  # estimated LM + hotword score of the unfinished word
    hot: str | None  # hotword spelling matched so far (None: cannot match before the next space)
    word: str = ""  # the word a space ended (for a phone model, one of those spelled so)
    children: dict | None = None


class PrefixSearch:
    """The search itself, on numpy log-probs [T, V]: picklable settings, no torch.

    It works on spellings: a letter model's words spell themselves; a phone model
    (:class:`asr.phones.PhoneTokenizer`) has each phone stand for one private-use character,
    its words spelled by their pronunciations, and a space branches into every lexicon word
    spelled so (homophones), which the LM then tells apart by the words around them.
    """

    def __init__(self, cfg: DecodingConfig, tokenizer: Tokenizer):
        if not 0.0 <= cfg.hotword_weight <= MAX_HOTWORD_WEIGHT:
            raise ValueError(
                f"decoding.hotword_weight must be in [0, {MAX_HOTWORD_WEIGHT}], "
                f"got {cfg.hotword_weight}"
            )
        if cfg.beam_size < 1 or cfg.nbest < 1:
            raise ValueError("decoding.beam_size and decoding.nbest must be at least 1")
        check_blank_penalty(cfg.blank_penalty)
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.blank = tokenizer.blank_id
        self.space = tokenizer.space_id
        self.phones = isinstance(tokenizer, PhoneTokenizer)
        if self.phones:
            self.symbols = [chr(PHONE_CHAR_BASE + i) for i in range(len(tokenizer))]
            self.symbols[self.space] = " "
        else:
            self.symbols = list(tokenizer.symbols)
        self.lm = WordLM(cfg.lm_path) if cfg.lm_path else None
        hotwords = {h for h in (normalize_text(w) for w in cfg.hotwords) if h}
        self.hotword_words = {w for h in hotwords for w in h.split()}
        self.lexicon = self._lexicon(cfg.lexicon)
        # {word: spelling} of the vocabulary (the lexicon, else the LM's words), spelled once
        # for the homophone lists and the lookahead table
        vocabulary = self.lexicon if self.lexicon is not None else self._lm_unigrams()
        spelled = self._spellings(vocabulary) if vocabulary is not None else None
        self.homophones = self._spell_lexicon(spelled)
        self.hotwords = {self._spell_phrase(h) for h in hotwords}
        self.lookahead = self._lookahead_table(spelled)
        self.hot_partial = self._hotword_table()

    def _lexicon(self, spec: str) -> set[str] | None:
        if not spec:
            if self.phones:  # phones spell no words by themselves: the training words
                trained = self.tokenizer.known_words
                if not trained:
                    raise ValueError(
                        "this phone model holds no training words to decode into: set "
                        "decoding.lexicon to a word list or to lm"
                    )
                return trained | self.hotword_words
            return None
        if spec == "lm":
            if self.lm is None or self.lm.unigrams is None:
                raise ValueError('decoding.lexicon="lm" needs an ARPA LM (binary LMs hide words)')
            words = set(self.lm.unigrams)
        else:
            words = read_lexicon(spec)
        return words | self.hotword_words

    def _lm_unigrams(self) -> dict[str, float] | None:
        return self.lm.unigrams if self.lm is not None else None

    def _spell_lexicon(self, spelled: dict[str, str] | None) -> dict[str, list[str]] | None:
        """{spelling: its words, most probable first} for a phone model (None for letters)."""
        if not self.phones:
            return None
        unigrams = self._lm_unigrams() or {}
        homophones: dict[str, list[str]] = {}
        for word, spelling in spelled.items():
            homophones.setdefault(spelling, []).append(word)
        # without an LM the first stands for all: hotwords, then the training words by
        # frequency; with one, the order only breaks ties
        rank = {w: i for words in self.tokenizer.words.values() for i, w in enumerate(words)}
        for words in homophones.values():
            words.sort(
                key=lambda w: (
                    w not in self.hotword_words,
                    -unigrams.get(w, NEG_INF),
                    rank.get(w, len(rank)),
                    w,
                )
            )
        return homophones

    def _spellings(self, words) -> dict[str, str]:
        """{word: spelling} (words with no phones left out)."""
        if not self.phones:
            return {w: w for w in words}
        index = {p: i for i, p in enumerate(self.tokenizer.symbols)}
        return {
            w: "".join(self.symbols[index[p]] for p in phones)
            for w, phones in self.tokenizer.pronunciations(words).items()
            if phones
        }

    def _spell_phrase(self, phrase: str) -> str:
        spelled = self._spellings(phrase.split())
        missing = [w for w in phrase.split() if w not in spelled]
        if missing:
            raise ValueError(f"hotword {phrase!r}: espeak-ng gives no phones for {missing[0]!r}")
        return " ".join(spelled[w] for w in phrase.split())

    def _lookahead_table(self, spelled: dict[str, str] | None) -> dict[str, float] | None:
        """{spelling prefix: best ln P(unigram) of the words it can become} (None: no vocabulary).

        With a lexicon, its keys are also the only spellings allowed.
        """
        if spelled is None:
            return None
        unigrams = self._lm_unigrams()
        unk = self.lm.unk_logp if self.lm is not None else 0.0
        table: dict[str, float] = {}
        for word, spelling in spelled.items():
            logp = unigrams.get(word, unk) if unigrams else unk
            for end in range(1, len(spelling) + 1):
                prefix = spelling[:end]
                if logp > table.get(prefix, NEG_INF):
                    table[prefix] = logp
        return table

    def _hotword_table(self) -> dict[str, float]:
        """{hotword prefix: bonus earned so far}: weight * matched / shortest completion."""
        table: dict[str, float] = {}
        for hot in sorted(self.hotwords, key=len):
            for end in range(1, len(hot) + 1):
                table.setdefault(hot[:end], self.cfg.hotword_weight * end / len(hot))
        return table

    # --- prefixes -------------------------------------------------------------------------
    def root(self) -> _Prefix:
        state = self.lm.begin() if self.lm else None
        return _Prefix(None, -1, "", state, 0.0, 0.0, "")

    def _ahead(self, partial: str, hot: str | None) -> float:
        score = self.hot_partial.get(hot, 0.0) if hot else 0.0
        if self.lm is not None and partial and self.lookahead is not None:
            score += self.cfg.lm_weight * self.lookahead.get(partial, self.lm.unk_logp)
        return score

    def _next_hot(self, hot: str | None, char: str) -> str | None:
        """Advance the hotword match by ``char``; fall back to a match starting after a space."""
        if hot is None:
            return "" if char == " " else None
        text = hot + char
        if text in self.hot_partial or (char == " " and hot in self.hotwords):
            return text if text in self.hot_partial else ""
        for cut in range(len(text)):
            if text[cut] == " " and text[cut + 1 :] in self.hot_partial:
                return text[cut + 1 :]
        return "" if char == " " else None

    def extend(self, prefix: _Prefix, token: int) -> tuple[_Prefix, ...]:
        """What ``prefix`` followed by ``token`` becomes (cached): nothing when the lexicon
        forbids it, one prefix per word when a space ends a phone spelling several words
        share (the LM scores each, here and on what follows)."""
        if prefix.children is None:
            prefix.children = {}
        children = prefix.children.get(token)
        if children is None:
            children = prefix.children[token] = self._make_children(prefix, token)
        return children

    def _make_children(self, prefix: _Prefix, token: int) -> tuple[_Prefix, ...]:
        char = self.symbols[token]
        if token != self.space:
            partial = prefix.partial + char
            if self.lexicon is not None and partial not in self.lookahead:
                return ()
            hot = self._next_hot(prefix.hot, char)
            ahead = self._ahead(partial, hot)
            return (_Prefix(prefix, token, partial, prefix.lm_state, prefix.fixed, ahead, hot),)
        # a space ends a word: score it for real
        hot_end = prefix.hot in self.hotwords
        hot = self._next_hot(prefix.hot, " ")
        ahead = self._ahead("", hot)
        children = []
        for word in self._words_spelled(prefix.partial):
            fixed, state = prefix.fixed + self.cfg.word_bonus, prefix.lm_state
            if self.lm is not None:
                state, logp = self.lm.score(state, word)
                fixed += self.cfg.lm_weight * logp
            # a phone hotword matches by sound: only the homophone that is the word earns it
            if hot_end and (not self.phones or word in self.hotword_words):
                fixed += self.cfg.hotword_weight
            children.append(_Prefix(prefix, token, "", state, fixed, ahead, hot, word))
        return tuple(children)

    def _words_spelled(self, spelling: str) -> list[str]:
        """The lexicon words a finished spelling can be (a letter model's: itself)."""
        if self.homophones is not None:
            words = self.homophones.get(spelling, [])
            # without an LM nothing tells homophones apart: the likeliest stands for all
            return words if self.lm is not None else words[:1]
        if self.lexicon is not None and spelling not in self.lexicon:
            return []
        return [spelling]

    def final_scores(self, prefix: _Prefix) -> list[tuple[_Prefix, float]]:
        """End of utterance: each way to finish the last word (one per homophone) and the
        sentence, with its LM, bonus and hotword score. Empty if none is allowed."""
        ends = self.extend(prefix, self.space) if prefix.partial else (prefix,)
        scored = []
        for end in ends:
            score = end.fixed
            if self.lm is not None:
                score += self.cfg.lm_weight * self.lm.finish(end.lm_state)
            scored.append((end, score))
        return scored

    def text_of(self, prefix: _Prefix) -> str:
        """The finished words of ``prefix`` (its unfinished word left out)."""
        words = []
        while prefix.parent is not None:
            if prefix.token == self.space:
                words.append(prefix.word)
            prefix = prefix.parent
        return " ".join(reversed(words))

    def tokens_of(self, prefix: _Prefix) -> list[int]:
        tokens = []
        while prefix.parent is not None:
            tokens.append(prefix.token)
            prefix = prefix.parent
        tokens.reverse()
        return tokens

    # --- the search -----------------------------------------------------------------------
    def search(self, log_probs: np.ndarray) -> list[tuple[float, list[int], str]]:
        """log_probs [T, V] -> up to ``nbest`` (score, tokens, text), best first, distinct texts."""
        beams = {self.root(): [0.0, NEG_INF]}  # prefix -> [ln p ending in blank, in a symbol]
        for frame in log_probs:
            beams = self._step(beams, frame)
        return self._finish(beams)

    def _step(self, beams: dict, frame: np.ndarray) -> dict:
        candidates = np.flatnonzero(frame >= TOKEN_MIN_LOGP).tolist()
        if not candidates:
            candidates = [int(frame.argmax())]
        blank_lp = float(frame[self.blank]) - self.cfg.blank_penalty
        symbols = [(c, float(frame[c])) for c in candidates if c != self.blank]
        nxt: dict[_Prefix, list[float]] = {}

        def add(prefix: _Prefix, slot: int, value: float) -> None:
            entry = nxt.get(prefix)
            if entry is None:
                nxt[prefix] = entry = [NEG_INF, NEG_INF]
            entry[slot] = _log_add(entry[slot], value)

        for prefix, (p_blank, p_symbol) in beams.items():
            total = _log_add(p_blank, p_symbol)
            add(prefix, 0, total + blank_lp)
            for token, lp in symbols:
                if token == self.space and not prefix.partial:
                    add(prefix, 1, total + lp)  # leading or doubled space: same text
                elif token == prefix.token:
                    add(prefix, 1, p_symbol + lp)  # a repeat merges...
                    if p_blank > NEG_INF:  # ...unless a blank came between
                        for child in self.extend(prefix, token):
                            add(child, 1, p_blank + lp)
                else:
                    for child in self.extend(prefix, token):
                        add(child, 1, total + lp)
        return self._prune(nxt)

    def _prune(self, beams: dict) -> dict:
        scored = [
            (_log_add(pb, ps) + p.fixed + p.ahead, i, p)
            for i, (p, (pb, ps)) in enumerate(beams.items())
        ]
        best = heapq.nlargest(self.cfg.beam_size, scored, key=lambda x: x[0])
        floor = best[0][0] - BEAM_THRESHOLD
        return {p: beams[p] for score, _, p in best if score >= floor}

    def _finish(self, beams: dict) -> list[tuple[float, list[int], str]]:
        by_text: dict[str, tuple[float, list[int], str]] = {}
        for prefix, (p_blank, p_symbol) in beams.items():
            tokens = self.tokens_of(prefix)  # the tokens emitted: no virtual final space
            for end, lm_score in self.final_scores(prefix):
                score = _log_add(p_blank, p_symbol) + lm_score
                text = self.text_of(end)
                if text not in by_text or score > by_text[text][0]:
                    by_text[text] = (score, tokens, text)
        if not by_text:  # no prefix ends on a lexicon word: keep the best one's whole words
            best = max(beams, key=lambda p: _log_add(*beams[p]) + p.fixed + p.ahead)
            score = _log_add(*beams[best]) + best.fixed
            while best.partial:
                best = best.parent
            return [(score, self.tokens_of(best), self.text_of(best))]
        ranked = sorted(by_text.values(), key=lambda x: -x[0])
        return ranked[: self.cfg.nbest]


# --- worker processes ---------------------------------------------------------------------
_WORKER_SEARCH: PrefixSearch | None = None


def _init_worker(search: PrefixSearch | tuple) -> None:
    global _WORKER_SEARCH
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)  # torch is imported already: the variable alone is too late
    _WORKER_SEARCH = search if isinstance(search, PrefixSearch) else PrefixSearch(*search)


def _search_in_worker(log_probs: np.ndarray) -> list[tuple[float, list[int], str]]:
    return _WORKER_SEARCH.search(log_probs)


class BeamDecoder(Decoder):
    """Prefix beam search behind the :class:`Decoder` interface (see the module docstring).

    ``workers > 1`` decodes the utterances of a batch in that many processes; call
    :meth:`close` (or use ``with``) to stop them early, else they end with the program.
    """

    def __init__(
        self,
        cfg: DecodingConfig,
        tokenizer: Tokenizer,
        workers: int = 1,
        log_priors: Sequence[float] | None = None,
    ):
        """``log_priors`` [V]: the model's label priors (:mod:`asr.priors`), which
        ``cfg.prior_weight`` > 0 needs."""
        super().__init__(tokenizer)
        self.cfg = cfg
        self.log_priors = None if log_priors is None else list(log_priors)
        if self.log_priors is not None and len(self.log_priors) != len(tokenizer):
            raise ValueError(
                f"label priors for {len(self.log_priors)} units, the tokenizer has {len(tokenizer)}"
            )
        self._offsets = self._prior_offsets(cfg.prior_weight)
        self.search = PrefixSearch(cfg, tokenizer)
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def _prior_offsets(self, weight: float) -> np.ndarray | None:
        if weight == 0:
            return None
        if self.log_priors is None:
            raise ValueError(
                "decoding.prior_weight needs label priors in the checkpoint: add them with "
                "`asr-lm priors -m CHECKPOINT --manifest DEV.jsonl`"
            )
        keep = (self.tokenizer.blank_id, self.tokenizer.space_id)
        return prior_offsets(self.log_priors, weight, keep)

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[Hypothesis]:
        """log_probs [B, T, V], lengths [B] -> the best hypothesis of each utterance."""
        lp = log_probs.detach().float().cpu().numpy()
        utterances = [lp[b, :n] for b, n in enumerate(lengths.tolist())]
        searched = utterances
        if self._offsets is not None:
            searched = [u + self._offsets for u in utterances]
        results = self._run(searched)
        # alignments (token times) follow the model's own posteriors
        return [self._hypotheses(u, r) for u, r in zip(utterances, results, strict=True)]

    def _run(self, utterances: list[np.ndarray]) -> list[list[tuple[float, list[int], str]]]:
        if self.workers == 1 or len(utterances) < 2:
            return [self.search.search(u) for u in utterances]
        return list(self._executor().map(_search_in_worker, utterances))

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # fork shares the loaded LM with the workers; elsewhere each worker reloads it
            if "fork" in multiprocessing.get_all_start_methods():
                context, init = multiprocessing.get_context("fork"), self.search
            else:
                context = multiprocessing.get_context("spawn")
                init = (self.cfg, self.tokenizer)
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=_init_worker, initargs=(init,)
            )
        return self._pool

    def _hypotheses(
        self, log_probs: np.ndarray, results: list[tuple[float, list[int], str]]
    ) -> Hypothesis:
        hyps = []
        for score, tokens, text in results:
            path = ctc_align(log_probs, tokens, self.tokenizer.blank_id)
            first = _first_frames(path, len(tokens))
            hyps.append(Hypothesis(text, score, tokens, first))
        best = hyps[0]
        best.alternatives = hyps[1:]
        return best

    def set_weights(
        self,
        lm_weight: float,
        word_bonus: float,
        blank_penalty: float | None = None,
        prior_weight: float | None = None,
    ) -> None:
        """New LM weight, word bonus (blank penalty, prior weight), keeping the loaded LM
        (for tuning)."""
        if blank_penalty is None:
            blank_penalty = self.cfg.blank_penalty
        if prior_weight is None:
            prior_weight = self.cfg.prior_weight
        check_blank_penalty(blank_penalty)
        self._offsets = self._prior_offsets(prior_weight)
        self.cfg = dataclasses.replace(
            self.cfg,
            lm_weight=lm_weight,
            word_bonus=word_bonus,
            blank_penalty=blank_penalty,
            prior_weight=prior_weight,
        )
        self.search.cfg = self.cfg
        self.close()  # forked workers hold the old settings

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def check_blank_penalty(value: float) -> None:
    """Raise ValueError unless ``value`` is a finite number."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"decoding.blank_penalty must be a finite number, got {value!r}")


def _first_frames(path: np.ndarray, count: int) -> list[int]:
    """First frame of each of ``count`` tokens on an alignment path from :func:`ctc_align`."""
    first = [0] * count
    seen = [False] * count
    for t, index in enumerate(path.tolist()):
        if index >= 0 and not seen[index]:
            seen[index] = True
            first[index] = t
    return first
