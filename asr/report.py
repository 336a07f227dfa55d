"""Evaluation reports that people read: the model behind them, and its JSON twin.

:meth:`ErrorReport.build` aligns every reference with its hypothesis (jiwer's word
alignments) and keeps what sclite's and icefall's reports show: totals in sclite's columns
(Corr/Sub/Del/Ins/Err/S.Err), normalised and raw WER, CER, sentence error rate; one row per
utterance, worst first, with each mistake in context (``the (edison->addison) company``);
ranked substitution, deletion and insertion pairs; per-word statistics; tables per speaker
and per utterance-length bucket. Training curves come from a run folder's ``metrics.csv``
and ``dev_metrics.jsonl`` (:func:`read_training_curves`).

:meth:`ErrorReport.to_dict` is the JSON for machines (what ``asr-evaluate compare`` reads).
The cells shared by the readable reports (sclite columns, the overview row, the settings
line) are here too; the writers live beside this module: :mod:`asr.report_text` (icefall's
errors file, Markdown) and :mod:`asr.report_html` (one self-contained page with inline SVG
plots).
"""

from __future__ import annotations

import bisect
import csv
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jiwer

from asr.metrics import ErrorCounts, char_counts, word_counts
from asr.text import normalize_text

REPORT_FORMAT = "asr-report/1"

# ---------------------------------------------------------------------------- normalisation


def whitespace_only(text: str) -> str:
    """Runs of white space collapsed, ends stripped, nothing else: the "raw" text."""
    return " ".join(text.split())


NORMALIZERS: dict[str, Callable[[str], str]] = {
    "default": normalize_text,  # the same as training targets
    "none": whitespace_only,
}


def get_normalizer(name: str) -> Callable[[str], str]:
    """The normaliser called ``name`` ("default": training's, "none": white space only)."""
    try:
        return NORMALIZERS[name]
    except KeyError:
        choices = ", ".join(NORMALIZERS)
        raise ValueError(f"normalize must be one of {choices}, got {name!r}") from None


# ---------------------------------------------------------------------------- the model

#: One aligned position: (reference word, hypothesis word); None marks the missing side.
WordPair = tuple[str | None, str | None]


@dataclass
class UtteranceScore:
    """One utterance: normalised texts, word alignment and its error counts."""

    id: str
    reference: str
    hypothesis: str
    alignment: list[WordPair]
    speaker: str | None = None
    duration: float | None = None

    @property
    def substitutions(self) -> int:
        return sum(1 for r, h in self.alignment if r is not None and h is not None and r != h)

    @property
    def deletions(self) -> int:
        return sum(1 for _, h in self.alignment if h is None)

    @property
    def insertions(self) -> int:
        return sum(1 for r, _ in self.alignment if r is None)

    @property
    def hits(self) -> int:
        return sum(1 for r, h in self.alignment if r == h)

    @property
    def words(self) -> int:
        return sum(1 for r, _ in self.alignment if r is not None)

    @property
    def errors(self) -> int:
        return sum(1 for r, h in self.alignment if r != h)

    @property
    def wer(self) -> float:
        return self.errors / max(self.words, 1)

    @property
    def context(self) -> str:
        """icefall's line: correct words as they are, each mistake as ``(ref->hyp)``."""
        return context_line(self.alignment)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "speaker": self.speaker,
            "duration": self.duration,
            "words": self.words,
            "errors": self.errors,
            "substitutions": self.substitutions,
            "deletions": self.deletions,
            "insertions": self.insertions,
            "wer": round(self.wer, 4),
            "reference": self.reference,
            "hypothesis": self.hypothesis,
            "context": self.context,
        }


@dataclass
class ScoreRow:
    """Summed word errors of a group of utterances: one line of an sclite table."""

    label: str
    utterances: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    hits: int = 0
    sentence_errors: int = 0  # utterances with at least one error

    @property
    def counts(self) -> ErrorCounts:
        """The row's word counts as :class:`asr.metrics.ErrorCounts` (which owns the sums)."""
        return ErrorCounts(self.substitutions, self.deletions, self.insertions, self.hits)

    @property
    def words(self) -> int:
        return self.counts.reference_length

    @property
    def errors(self) -> int:
        return self.counts.errors

    @property
    def wer(self) -> float:
        return self.counts.rate

    @property
    def sentence_error_rate(self) -> float:
        return self.sentence_errors / max(self.utterances, 1)

    def add(self, utt: UtteranceScore) -> None:
        self.utterances += 1
        self.substitutions += utt.substitutions
        self.deletions += utt.deletions
        self.insertions += utt.insertions
        self.hits += utt.hits
        self.sentence_errors += utt.errors > 0

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "words": self.words,
            "errors": self.errors,
            "wer": round(self.wer, 6),
            "sentence_error_rate": round(self.sentence_error_rate, 6),
        }


def align_words(references: Sequence[str], hypotheses: Sequence[str]) -> list[list[WordPair]]:
    """Word alignment of each reference with its hypothesis, from jiwer's edit script."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    out: list[list[WordPair]] = [[(None, w) for w in h.split()] for h in hypotheses]
    # An empty reference leaves only insertions (kept above); jiwer gets the rest in one call.
    todo = [i for i, ref in enumerate(references) if ref.split()]
    if todo:
        result = jiwer.process_words([references[i] for i in todo], [hypotheses[i] for i in todo])
        for i, ref, hyp, chunks in zip(
            todo, result.references, result.hypotheses, result.alignments, strict=True
        ):
            out[i] = _pairs_from_chunks(ref, hyp, chunks)
    return out


def _pairs_from_chunks(ref: list[str], hyp: list[str], chunks) -> list[WordPair]:
    pairs: list[WordPair] = []
    for chunk in chunks:
        ref_words = ref[chunk.ref_start_idx : chunk.ref_end_idx]
        hyp_words = hyp[chunk.hyp_start_idx : chunk.hyp_end_idx]
        if chunk.type == "delete":
            pairs.extend((w, None) for w in ref_words)
        elif chunk.type == "insert":
            pairs.extend((None, w) for w in hyp_words)
        else:  # "equal" or "substitute": the two sides have the same length
            pairs.extend(zip(ref_words, hyp_words, strict=True))
    return pairs


def context_line(alignment: Sequence[WordPair]) -> str:
    """``the (edison->addison) company``; a missing word is ``*``: ``(of->*)``, ``(*->a)``."""
    return " ".join(r if r == h else f"({r or '*'}->{h or '*'})" for r, h in alignment)


SECONDS_EDGES = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
WORD_EDGES = (1, 2, 4, 8, 16, 32, 64)


def length_bucket(value: float, unit: str) -> tuple[int, str]:
    """(order, label) of the doubling-width bucket holding ``value`` ("seconds" or "words")."""
    edges = SECONDS_EDGES if unit == "seconds" else WORD_EDGES
    i = bisect.bisect_right(edges, value)
    if unit != "seconds":  # whole words: [4, 8) reads better as 4–7
        if i == len(edges):
            return i, f"≥{edges[-1]} words"
        low, high = (0, 1) if i == 0 else (edges[i - 1], edges[i])
        return (
            i,
            f"{low} word{'' if low == 1 else 's'}"
            if high - low == 1
            else f"{low}–{high - 1} words",
        )
    if i == 0:
        return 0, f"<{edges[0]:g} s"
    if i == len(edges):
        return i, f"≥{edges[-1]:g} s"
    return i, f"{edges[i - 1]:g}–{edges[i]:g} s"


@dataclass
class ErrorReport:
    """Everything a report shows about one manifest, computed once from the texts."""

    name: str
    normalize: str
    utterances: list[UtteranceScore]  # manifest order
    raw: ErrorCounts  # word counts on white-space-only text
    chars: ErrorCounts  # character counts on normalised text
    length_unit: str = "seconds"
    meta: dict = field(default_factory=dict)  # manifest, checkpoint, speed, memory, settings

    @classmethod
    def build(
        cls,
        references: Sequence[str],
        hypotheses: Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        speakers: Sequence[str | None] | None = None,
        durations: Sequence[float] | None = None,
        normalize: str = "default",
        name: str = "",
        meta: dict | None = None,
    ) -> ErrorReport:
        """Align and count; ``durations`` (seconds) bucket by length, else reference words."""
        norm = get_normalizer(normalize)
        refs = [norm(t) for t in references]
        hyps = [norm(t) for t in hypotheses]
        n = len(refs)
        ids = list(ids) if ids is not None else [str(i) for i in range(n)]
        speakers = list(speakers) if speakers is not None else [None] * n
        durs = list(durations) if durations is not None else [None] * n
        if not len(ids) == len(speakers) == len(durs) == n:
            raise ValueError(
                f"{n} references but {len(ids)} ids, {len(speakers)} speakers, "
                f"{len(durs)} durations"
            )
        utterances = [
            UtteranceScore(ids[i], refs[i], hyps[i], pairs, speakers[i], durs[i])
            for i, pairs in enumerate(align_words(refs, hyps))
        ]
        raw = word_counts(
            [whitespace_only(t) for t in references], [whitespace_only(t) for t in hypotheses]
        )
        unit = "seconds" if durations is not None else "words"
        return cls(name, normalize, utterances, raw, char_counts(refs, hyps), unit, meta or {})

    # -- tables -----------------------------------------------------------------------

    @property
    def total(self) -> ScoreRow:
        return _sum_rows("all", self.utterances)

    def worst_first(self) -> list[UtteranceScore]:
        """Utterances sorted by errors, then WER, most first (ties in id order)."""
        return sorted(self.utterances, key=lambda u: (-u.errors, -u.wer, u.id))

    def by_speaker(self) -> list[ScoreRow]:
        """One row per speaker, highest WER first; empty when no utterance names one."""
        groups: dict[str, list[UtteranceScore]] = {}
        for utt in self.utterances:
            if utt.speaker is not None:
                groups.setdefault(utt.speaker, []).append(utt)
        rows = [_sum_rows(speaker, utts) for speaker, utts in groups.items()]
        return sorted(rows, key=lambda r: (-r.wer, r.label))

    def by_length(self) -> list[ScoreRow]:
        """One row per length bucket (duration, or reference words), shortest first."""
        groups: dict[tuple[int, str], list[UtteranceScore]] = {}
        for utt in self.utterances:
            value = utt.duration if self.length_unit == "seconds" else utt.words
            groups.setdefault(length_bucket(value or 0.0, self.length_unit), []).append(utt)
        return [_sum_rows(label, groups[(order, label)]) for order, label in sorted(groups)]

    def substitution_pairs(self) -> list[tuple[tuple[str, str], int]]:
        """(reference word, hypothesis word) substitutions, most frequent first."""
        pairs = Counter(
            (r, h) for u in self.utterances for r, h in u.alignment if r and h and r != h
        )
        return _ranked(pairs)

    def deletion_counts(self) -> list[tuple[str, int]]:
        return _ranked(Counter(r for u in self.utterances for r, h in u.alignment if h is None))

    def insertion_counts(self) -> list[tuple[str, int]]:
        return _ranked(Counter(h for u in self.utterances for r, h in u.alignment if r is None))

    def word_stats(self) -> list[dict]:
        """Per word: correct, errors on either side, count in references and hypotheses."""
        stats: dict[str, Counter] = {}
        for utt in self.utterances:
            for ref, hyp in utt.alignment:
                for word, side in ((ref, "ref"), (hyp, "hyp")):
                    if word is not None:
                        entry = stats.setdefault(word, Counter())
                        entry[side] += 1
                        entry["errors"] += ref != hyp
                if ref == hyp:
                    stats[ref]["correct"] += 1
        rows = [
            {"word": w, "correct": c["correct"], "errors": c["errors"]}
            | {"in_reference": c["ref"], "in_hypothesis": c["hyp"]}
            for w, c in stats.items()
        ]
        return sorted(rows, key=lambda r: (-r["errors"], r["word"]))

    # -- machine-readable -------------------------------------------------------------

    def summary(self) -> dict:
        """Corpus numbers and settings (the ``summary.json`` of earlier versions, extended)."""
        total = self.total
        return {
            "wer": round(total.wer, 6),
            "cer": round(self.chars.rate, 6),
            "sentence_error_rate": round(total.sentence_error_rate, 6),
            "wer_raw": round(self.raw.rate, 6),
            "normalize": self.normalize,
            "utterances": total.utterances,
            "words": total.words,
            "word_errors": total.counts.to_dict(),
            "char_errors": self.chars.to_dict(),
            "raw_word_errors": self.raw.to_dict(),
            **self.meta,
        }

    def to_dict(self) -> dict:
        """The whole report as JSON-ready data (what ``asr-evaluate compare`` reads)."""
        return {
            "format": REPORT_FORMAT,
            "name": self.name,
            "summary": self.summary(),
            "length_unit": self.length_unit,
            "by_length": [row.to_dict() for row in self.by_length()],
            "by_speaker": [row.to_dict() for row in self.by_speaker()],
            "substitutions": [
                {"reference": r, "hypothesis": h, "count": n}
                for (r, h), n in self.substitution_pairs()
            ],
            "deletions": [{"word": w, "count": n} for w, n in self.deletion_counts()],
            "insertions": [{"word": w, "count": n} for w, n in self.insertion_counts()],
            "word_stats": self.word_stats(),
            "utterances": [u.to_dict() for u in self.worst_first()],
        }


def _sum_rows(label: str, utterances: Sequence[UtteranceScore]) -> ScoreRow:
    row = ScoreRow(label)
    for utt in utterances:
        row.add(utt)
    return row


def _ranked(counter: Counter) -> list:
    return sorted(counter.items(), key=lambda item: (-item[1], item[0]))


# ---------------------------------------------------------------------------- training curves


@dataclass
class TrainingCurves:
    """A training run's logged loss and learning rate, and its dev WER/CER per evaluation."""

    folder: str
    steps: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    dev_steps: list[float] = field(default_factory=list)
    dev_wer: list[float] = field(default_factory=list)
    dev_cer: list[float] = field(default_factory=list)


def read_training_curves(folder: str | Path) -> TrainingCurves:
    """Curves from ``folder/metrics.csv`` and ``folder/dev_metrics.jsonl``.

    A step logged twice (a resumed run repeats the steps after its checkpoint) keeps its
    last value. Raises ValueError when the folder has neither file.
    """
    folder = Path(folder)
    metrics, dev = folder / "metrics.csv", folder / "dev_metrics.jsonl"
    if not metrics.is_file() and not dev.is_file():
        raise ValueError(f"training_run: no metrics.csv or dev_metrics.jsonl in {folder}")
    curves = TrainingCurves(str(folder))
    if metrics.is_file():
        with open(metrics, newline="", encoding="utf-8") as handle:
            by_step = {float(r["step"]): r for r in csv.DictReader(handle) if r.get("step")}
        for step in sorted(by_step):
            loss, lr = _number(by_step[step].get("loss")), _number(by_step[step].get("lr"))
            if loss is not None and lr is not None:
                curves.steps.append(step)
                curves.loss.append(loss)
                curves.lr.append(lr)
    if dev.is_file():
        evals = [json.loads(line) for line in dev.read_text(encoding="utf-8").splitlines() if line]
        for entry in sorted({e["step"]: e for e in evals if "step" in e}.values(), key=_step):
            curves.dev_steps.append(float(entry["step"]))
            curves.dev_wer.append(float(entry.get("wer", math.nan)))
            curves.dev_cer.append(float(entry.get("cer", math.nan)))
    return curves


def _step(entry: dict) -> float:
    return float(entry["step"])


def _number(text: str | None) -> float | None:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------- shared cells
# What the Markdown and the HTML report both show, as text (HTML escapes it).

SCLITE_HEADERS = ["# Snt", "# Wrd", "Corr", "Sub", "Del", "Ins", "Err", "S.Err"]


def sclite_cells(row: ScoreRow) -> list[str]:
    """sclite's columns: counts, then percentages of reference words (S.Err of sentences)."""
    words = max(row.words, 1)
    return [
        str(row.utterances),
        str(row.words),
        *(f"{100 * n / words:.1f}" for n in (row.hits, row.substitutions, row.deletions)),
        f"{100 * row.insertions / words:.1f}",
        f"{100 * row.wer:.1f}",
        f"{100 * row.sentence_error_rate:.1f}",
    ]


def sclite_rows(rows: Sequence[ScoreRow]) -> list[list[str]]:
    """Table rows under ``[label column, *SCLITE_HEADERS]``: each row's label, then its cells."""
    return [[row.label, *sclite_cells(row)] for row in rows]


OVERVIEW_HEADERS = [
    "set",
    "utts",
    "words",
    "WER %",
    "raw WER %",
    "CER %",
    "SER %",
    "sub",
    "del",
    "ins",
    "RTF",
    "peak RSS MB",
]


def overview_cells(report: ErrorReport) -> list[str]:
    """One row under :data:`OVERVIEW_HEADERS`: the set's name, then its numbers."""
    t, meta = report.total, report.meta
    rtf = meta.get("real_time_factor")
    rss = meta.get("peak_rss_mb")
    return [
        report.name,
        str(t.utterances),
        str(t.words),
        f"{100 * t.wer:.2f}",
        f"{100 * report.raw.rate:.2f}",
        f"{100 * report.chars.rate:.2f}",
        f"{100 * t.sentence_error_rate:.2f}",
        str(t.substitutions),
        str(t.deletions),
        str(t.insertions),
        "" if rtf is None else f"{rtf:.4f}",
        "" if rss is None else f"{rss:.0f}",
    ]


def settings_line(report: ErrorReport) -> str:
    """Checkpoint, its hash, decoding, normalisation and device, as one line."""
    meta = report.meta
    decoding = meta.get("decoding") or {}
    digest = str(meta.get("checkpoint_sha256", ""))[:12]
    parts = [
        f"checkpoint {meta['checkpoint']}" if meta.get("checkpoint") else "",
        f"sha256 {digest}…" if digest else "",
        f"decoding {_decoding_text(decoding)}" if decoding else "",
        f"normalisation {report.normalize}",
        f"{meta['pad_seconds']} s of silence around each clip" if meta.get("pad_seconds") else "",
        f"device {meta['device']}" if meta.get("device") else "",
    ]
    return ", ".join(p for p in parts if p)


def _decoding_text(decoding: dict) -> str:
    """ "greedy", or "beam (beam_size 16, lm_path x.arpa, lm_weight 0.5)": what was set."""
    method = str(decoding.get("method", "?"))
    if method == "greedy":
        return method
    keys = (
        "beam_size",
        "lm_path",
        "lm_weight",
        "word_bonus",
        "blank_penalty",
        "lexicon",
        "hotwords",
    )
    details = ", ".join(f"{k} {decoding[k]}" for k in keys if decoding.get(k) not in (None, "", []))
    return f"{method} ({details})" if details else method
