"""Word n-gram language models for beam search: building an ARPA file, tuning its weights.

:func:`build_arpa` estimates an interpolated Kneser-Ney n-gram from text files and/or
manifests (``asr-lm build``) and writes it in the ARPA format that ``kenlm`` reads.
:func:`tune_lm` grid-searches ``lm_weight`` x ``word_bonus`` (x ``blank_penalty`` x
``prior_weight``) on a dev manifest (``asr-lm tune``): the model's log-probs are computed
once and decoded many times. :func:`add_label_priors` stores the model's label priors in its
checkpoint (``asr-lm priors``), which ``prior_weight`` needs.

The estimator (Chen & Goodman's interpolated Kneser-Ney with one discount per order):

- each sentence is normalised (:func:`asr.text.normalize_text`) and wrapped in <s> ... </s>;
- the highest order, and n-grams that start with <s>, use raw counts; other orders use
  continuation counts (how many different words precede the n-gram);
- ``D_n = n1 / (n1 + 2 n2)`` (n1, n2: n-grams of order n with count 1 and 2; 0.5 when that
  is not in (0, 1)); ``P(w|h) = (c(h w) - D_n) / c(h) + D_n * types(h) / c(h) * P(w|h')``,
  where h' drops the oldest word; below unigrams lies a base distribution over the
  vocabulary (every word seen, </s> and <unk>, and the words of an optional word list),
  which is where <unk> and the listed words the text lacks get their probability: uniform,
  or, when the list gives word frequencies, in proportion to them (words it lacks count as
  its rarest word), so that a common word missing from the text outranks a rare one;
- in the ARPA file each n-gram carries its interpolated probability and each context the
  weight ``D_n * types(h) / c(h)``, which is exactly what back-off applies to unseen words.

No pruning: for millions of words this takes a minute and some gigabytes in Python.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from asr.io_utils import atomic_write
from asr.text import normalize_text

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def read_sentences(paths: Iterable[str | Path]) -> Iterator[str]:
    """Normalised non-empty sentences of text files (one a line, ``.gz`` too) and manifests.

    A ``.json``/``.jsonl`` file is read as a manifest: its ``text`` fields.
    """
    for path in paths:
        path = Path(path)
        manifest = path.suffix in (".json", ".jsonl")
        with _open_text(path, "text file") as handle:
            for number, line in enumerate(handle, 1):
                if manifest and line.strip():
                    try:
                        line = json.loads(line)["text"]
                    except (ValueError, KeyError, TypeError):
                        raise ValueError(
                            f"{path}:{number}: not a manifest line with text"
                        ) from None
                text = normalize_text(line)
                if text:
                    yield text


def _open_text(path: Path, kind: str):
    """``path`` opened for reading as UTF-8 text (``.gz`` unpacked); ValueError if missing."""
    if not path.is_file():
        raise ValueError(f"{path}: {kind} not found")
    return (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8")


def count_ngrams(sentences: Iterable[str], order: int) -> list[Counter]:
    """Raw counts: ``counts[n - 1][(w1, ..., wn)]`` for n = 1..order, sentences in <s> </s>."""
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    counts = [Counter() for _ in range(order)]
    for sentence in sentences:
        words = (BOS, *sentence.split(), EOS)
        for n in range(1, order + 1):
            table = counts[n - 1]
            for start in range(len(words) - n + 1):
                table[words[start : start + n]] += 1
    return counts


def adjusted_counts(raw: list[Counter]) -> list[Counter]:
    """Kneser-Ney counts: raw at the top order and after <s>, continuation counts elsewhere."""
    adjusted = [Counter() for _ in raw]
    adjusted[-1] = raw[-1]
    for n in range(len(raw) - 1):  # n: index of the order being adjusted
        continuation = Counter(gram[1:] for gram in raw[n + 1])
        for gram, count in raw[n].items():
            adjusted[n][gram] = count if gram[0] == BOS else continuation[gram]
    return adjusted


def discount(counts: Counter) -> float:
    """``n1 / (n1 + 2 n2)`` over the n-grams that are predicted (not the <s> unigram)."""
    ones = sum(1 for g, c in counts.items() if c == 1 and g != (BOS,))
    twos = sum(1 for g, c in counts.items() if c == 2 and g != (BOS,))
    value = ones / (ones + 2 * twos) if ones + twos else 0.0
    return value if 0.0 < value < 1.0 else 0.5


@dataclass
class NgramModel:
    """Interpolated probabilities and back-off weights, by order (natural numbers, not logs)."""

    order: int
    probs: list[dict[tuple, float]]  # probs[n - 1][gram] = P(gram[-1] | gram[:-1])
    backoffs: list[dict[tuple, float]]  # backoffs[n - 1][context of n words]
    vocabulary: list[str]

    def sizes(self) -> list[int]:
        """N-grams of each order as the ARPA file lists them (unigrams include <s>)."""
        return [len(self.probs[0]) + 1] + [len(p) for p in self.probs[1:]]

    def prob(self, word: str, history: Sequence[str] = ()) -> float:
        """P(word | history) with back-off, as an ARPA reader computes it."""
        history = tuple(history)[-(self.order - 1) :] if self.order > 1 else ()
        weight = 1.0
        for start in range(len(history) + 1):
            context = history[start:]
            gram = (*context, word)
            if gram in self.probs[len(gram) - 1]:
                return weight * self.probs[len(gram) - 1][gram]
            if context:
                weight *= self.backoffs[len(context) - 1].get(context, 1.0)
        return weight * self.probs[0][(UNK,)]


def estimate(
    sentences: Iterable[str], order: int = 3, word_list: Mapping[str, float] | None = None
) -> NgramModel:
    """Interpolated Kneser-Ney model of normalised ``sentences`` (see the module docstring).

    ``word_list`` ({word: frequency}, :func:`read_word_list`) adds words to the vocabulary
    and shapes the base distribution below unigrams.
    """
    counts = adjusted_counts(count_ngrams(sentences, order))
    if len(counts[0]) <= 1:  # only <s>... : no sentence at all
        raise ValueError("no text to estimate a language model from")
    word_list = word_list or {}
    vocabulary = sorted(({g[0] for g in counts[0]} - {BOS}) | set(word_list) | {EOS, UNK})
    probs: list[dict[tuple, float]] = []
    backoffs: list[dict[tuple, float]] = []
    lower = base_distribution(vocabulary, word_list)
    for n, table in enumerate(counts, 1):
        d = discount(table)
        totals: dict[tuple, float] = defaultdict(float)
        types: dict[tuple, int] = defaultdict(int)
        for gram, count in table.items():
            if gram != (BOS,):
                totals[gram[:-1]] += count
                types[gram[:-1]] += 1
        gamma = {h: d * types[h] / totals[h] for h in totals}
        current = {}
        for gram, count in table.items():
            if gram == (BOS,):
                continue
            history = gram[:-1]
            below = lower[gram[1:]] if n > 1 else lower[gram]
            current[gram] = (count - d) / totals[history] + gamma[history] * below
        if n == 1:  # <unk> and listed words the text lacks: their share of the base alone
            for word in vocabulary:
                current.setdefault((word,), gamma[()] * lower[(word,)])
        probs.append(current)
        if n > 1:
            backoffs.append({h: g for h, g in gamma.items()})
        lower = current
    backoffs.append({})  # the top order has no back-off weights
    return NgramModel(order, probs, backoffs, vocabulary)


def base_distribution(vocabulary: Sequence[str], word_list: Mapping[str, float]) -> dict:
    """{(word,): probability} below unigrams: uniform, or by the list's frequencies.

    Words the list lacks (including </s> and <unk>) count as its rarest word; a list
    without frequencies (all 1) gives the uniform distribution.
    """
    floor = min(word_list.values()) if word_list else 1.0
    weights = {w: word_list.get(w, floor) for w in vocabulary}
    total = sum(weights.values())
    return {(w,): weight / total for w, weight in weights.items()}


def read_word_list(path: str | Path) -> dict[str, float]:
    """{normalised word: frequency} from lines ``word`` or ``word<whitespace>frequency``.

    Frequencies are any positive numbers (counts, or shares of a corpus); a line without
    one counts 1. Entries that normalise to several words or none are skipped; a word
    listed twice keeps its larger frequency.
    """
    path = Path(path)
    words: dict[str, float] = {}
    with _open_text(path, "word list") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) > 2:
                raise ValueError(f"{path}:{number}: expected 'word' or 'word frequency'")
            try:
                frequency = float(fields[1]) if len(fields) == 2 else 1.0
            except ValueError:
                frequency = float("nan")
            if not frequency > 0.0 or math.isinf(frequency):
                raise ValueError(f"{path}:{number}: frequency must be a positive number")
            word = normalize_text(fields[0])
            if word and " " not in word:
                words[word] = max(frequency, words.get(word, 0.0))
    if not words:
        raise ValueError(f"{path}: no words in the word list")
    return words


def write_arpa(model: NgramModel, path: str | Path) -> None:
    """The model as an ARPA file (log10 values, tab separated), written atomically."""
    buffer = io.StringIO()
    buffer.write("\\data\\\n")
    for n, size in enumerate(model.sizes(), 1):
        buffer.write(f"ngram {n}={size}\n")
    for n in range(1, model.order + 1):
        buffer.write(f"\n\\{n}-grams:\n")
        # back-off weights of order-n contexts live in the order-(n+1) table (gamma of h)
        weights = model.backoffs[n - 1] if n < model.order else {}
        entries = dict(model.probs[n - 1])
        if n == 1:
            entries[(BOS,)] = 0.0  # never predicted: ARPA's convention is -99
        for gram in sorted(entries):
            prob = entries[gram]
            logp = -99.0 if prob <= 0.0 else math.log10(prob)
            line = f"{logp:.6f}\t{' '.join(gram)}"
            if n < model.order:
                line += f"\t{math.log10(weights[gram]) if gram in weights else 0.0:.6f}"
            buffer.write(line + "\n")
    buffer.write("\n\\end\\\n")
    with atomic_write(path) as handle:
        handle.write(buffer.getvalue())


def build_arpa(
    inputs: Sequence[str | Path],
    output: str | Path,
    order: int = 3,
    word_list: str | Path | None = None,
) -> NgramModel:
    """Estimate an ``order``-gram from text files / manifests and write it to ``output``.

    ``word_list``: a file of extra vocabulary for :func:`estimate` (:func:`read_word_list`).
    """
    words = read_word_list(word_list) if word_list else None
    model = estimate(read_sentences(inputs), order, words)
    write_arpa(model, output)
    return model


# --- tuning the LM weights on a dev set ------------------------------------------------------
def tune_lm(
    checkpoint: str | Path,
    manifest: str | Path | Sequence[str | Path],
    lm_path: str | Path,
    lm_weights: Sequence[float],
    word_bonuses: Sequence[float],
    beam_size: int = 16,
    lexicon: str = "",
    workers: int = 1,
    device: str = "cpu",
    blank_penalties: Sequence[float] = (0.0,),
    prior_weights: Sequence[float] = (0.0,),
) -> list[dict]:
    """WER/CER of beam search for every (lm_weight, word_bonus, blank_penalty,
    prior_weight), plus greedy.

    The model runs once over the manifest (several are pooled, so one setting serves
    them all); each grid point only re-runs the search. Returns rows
    ``{"lm_weight", "word_bonus", "blank_penalty", "prior_weight", "wer", "cer"}``, greedy
    first (the four settings None).
    """
    from asr.beam import BeamDecoder, check_blank_penalty
    from asr.config import DecodingConfig
    from asr.decoding import greedy_decode
    from asr.priors import check_prior_weight
    from asr.transcribe import Transcriber

    for penalty in blank_penalties:  # before the model runs over the dev set
        check_blank_penalty(penalty)
    for weight in prior_weights:
        check_prior_weight(weight)
    transcriber = Transcriber.from_checkpoint(checkpoint, device)
    tokenizer = transcriber.loaded.tokenizer
    log_priors = transcriber.loaded.log_priors
    if any(prior_weights) and log_priors is None:
        raise ValueError(
            f"{checkpoint}: no label priors for --prior-weights: add them with asr-lm priors"
        )
    utterances, log_probs = _manifest_emissions(transcriber, manifest)
    references = [u.text for u in utterances]
    greedy = _decode_all(lambda lp, n: greedy_decode(lp, n, tokenizer), log_probs)
    greedy_row = dict.fromkeys(("lm_weight", "word_bonus", "blank_penalty", "prior_weight"))
    rows = [{**greedy_row, **_error_rates(references, greedy)}]
    cfg = DecodingConfig(method="beam", beam_size=beam_size, lm_path=str(lm_path), lexicon=lexicon)
    grid = itertools.product(lm_weights, word_bonuses, blank_penalties, prior_weights)
    with BeamDecoder(cfg, tokenizer, workers, log_priors) as decoder:
        for lm_weight, word_bonus, blank_penalty, prior_weight in grid:
            decoder.set_weights(lm_weight, word_bonus, blank_penalty, prior_weight)
            row = {
                "lm_weight": lm_weight,
                "word_bonus": word_bonus,
                "blank_penalty": blank_penalty,
                "prior_weight": prior_weight,
            }
            rows.append({**row, **_error_rates(references, _decode_all(decoder, log_probs))})
    return rows


def add_label_priors(
    checkpoint: str | Path,
    manifest: str | Path | Sequence[str | Path],
    device: str = "cpu",
) -> list[float]:
    """Estimate the model's label priors on the manifests' audio (no transcripts needed;
    :mod:`asr.priors`) and store them in ``checkpoint``, atomically. Returns them [V]."""
    from asr.checkpoint import store_log_priors
    from asr.priors import estimate_log_priors
    from asr.transcribe import Transcriber

    with Transcriber.from_checkpoint(checkpoint, device) as transcriber:
        _, log_probs = _manifest_emissions(transcriber, manifest)
    priors = [float(x) for x in estimate_log_priors(log_probs)]
    store_log_priors(checkpoint, priors)
    return priors


def _manifest_emissions(transcriber, manifest: str | Path | Sequence[str | Path]) -> tuple:
    """(utterances, their log-probs [T_i, V]) for one manifest or several, pooled."""
    from asr.manifest import read_manifests

    utterances = read_manifests([manifest] if isinstance(manifest, (str, Path)) else manifest)
    log_probs = transcriber.file_emissions(
        [u.audio_filepath for u in utterances], [u.byte_range for u in utterances]
    )
    return utterances, log_probs


def _decode_all(decoder, log_probs: list, batch_size: int = 64) -> list[str]:
    """Texts for a list of log-probs [T_i, V], decoded in padded batches."""
    import numpy as np
    import torch

    texts = []
    for start in range(0, len(log_probs), batch_size):
        chunk = log_probs[start : start + batch_size]
        lengths = [x.shape[0] for x in chunk]
        padded = np.zeros((len(chunk), max(lengths), chunk[0].shape[1]), np.float32)
        for row, x in enumerate(chunk):
            padded[row, : x.shape[0]] = x
        hyps = decoder(torch.from_numpy(padded), torch.tensor(lengths))
        texts.extend(h.text for h in hyps)
    return texts


def _error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict:
    """WER and CER as ``asr-evaluate`` scores them."""
    from asr.evaluate import score

    errors = score(references, hypotheses)
    return {"wer": errors["wer"], "cer": errors["cer"]}


def best_row(rows: Sequence[dict]) -> dict | None:
    """The beam-search row of :func:`tune_lm` with the lowest WER (then CER)."""
    beam = [r for r in rows if r["lm_weight"] is not None]
    return min(beam, key=lambda r: (r["wer"], r["cer"])) if beam else None


def tuning_table(rows: Sequence[dict]) -> str:
    """The rows of :func:`tune_lm` as an aligned text table; the best beam row is starred."""
    best = best_row(rows)
    head = f"{'lm_weight':>9}  {'word_bonus':>10}  {'blank_pen':>9}  {'prior_wt':>8}"
    lines = [f"{head}  {'WER':>7}  {'CER':>7}"]
    for row in rows:
        if row["lm_weight"] is None:
            left = f"{'greedy':>9}  {'':>10}  {'':>9}  {'':>8}"
        else:
            # rows from before the blank penalty and the priors: 0
            penalty = row.get("blank_penalty") or 0.0
            prior = row.get("prior_weight") or 0.0
            left = f"{row['lm_weight']:>9.3g}  {row['word_bonus']:>10.3g}  {penalty:>9.3g}"
            left += f"  {prior:>8.3g}"
        mark = "  *" if row is best else ""
        lines.append(f"{left}  {row['wer']:>7.4f}  {row['cer']:>7.4f}{mark}")
    return "\n".join(lines) + "\n"
