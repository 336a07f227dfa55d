"""Evaluation reports that people read, and their machine-readable twin.

:meth:`ErrorReport.build` aligns every reference with its hypothesis (jiwer's word
alignments) and keeps what sclite's and icefall's reports show: totals in sclite's columns
(Corr/Sub/Del/Ins/Err/S.Err), normalised and raw WER, CER, sentence error rate; one row per
utterance, worst first, with each mistake in context (``the (edison->addison) company``);
ranked substitution, deletion and insertion pairs; per-word statistics; tables per speaker
and per utterance-length bucket.

Writers: :meth:`ErrorReport.to_dict` (JSON for machines), :func:`errors_text` (icefall's
errors file), :func:`markdown_report` (pull requests) and :func:`html_report` (one
self-contained page with inline SVG plots: no scripts, no external resources). Training
curves come from a run folder's ``metrics.csv`` and ``dev_metrics.jsonl``
(:func:`read_training_curves`).
"""

from __future__ import annotations

import bisect
import csv
import html
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
    def words(self) -> int:
        return self.hits + self.substitutions + self.deletions

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        return self.errors / max(self.words, 1)

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
        counts = ErrorCounts(total.substitutions, total.deletions, total.insertions, total.hits)
        return {
            "wer": round(total.wer, 6),
            "cer": round(self.chars.rate, 6),
            "sentence_error_rate": round(total.sentence_error_rate, 6),
            "wer_raw": round(self.raw.rate, 6),
            "normalize": self.normalize,
            "utterances": total.utterances,
            "words": total.words,
            "word_errors": counts.to_dict(),
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


# ---------------------------------------------------------------------------- errors.txt


def errors_text(report: ErrorReport) -> str:
    """icefall's errors file: totals, each utterance in context, ranked pairs, word stats."""
    t = report.total
    lines = [
        f"%WER {100 * t.wer:.2f} [ {t.errors} / {t.words}, {t.insertions} ins, "
        f"{t.deletions} del, {t.substitutions} sub ]",
        f"%SER {100 * t.sentence_error_rate:.2f} [ {t.sentence_errors} / {t.utterances} ]",
        f"%CER {100 * report.chars.rate:.2f}   raw %WER {100 * report.raw.rate:.2f} "
        f"(normalisation: {report.normalize})",
        f"Errors: {t.insertions} insertions, {t.deletions} deletions, {t.substitutions} "
        f"substitutions, over {t.words} reference words ({t.hits} correct)",
        "Search below for sections starting with PER-UTT DETAILS:, SUBSTITUTIONS:, "
        "DELETIONS:, INSERTIONS:, PER-WORD STATS:",
        "",
        "PER-UTT DETAILS: corr or (ref->hyp), most errors first",
    ]
    lines += [f"{u.id}:\t{u.context}" for u in report.worst_first()]
    lines += ["", "SUBSTITUTIONS: count ref -> hyp"]
    lines += [f"{n}   {r} -> {h}" for (r, h), n in report.substitution_pairs()]
    lines += ["", "DELETIONS: count ref"]
    lines += [f"{n}   {w}" for w, n in report.deletion_counts()]
    lines += ["", "INSERTIONS: count hyp"]
    lines += [f"{n}   {w}" for w, n in report.insertion_counts()]
    lines += ["", "PER-WORD STATS: word  corr tot_errs count_in_ref count_in_hyp"]
    lines += [
        f"{s['word']}   {s['correct']} {s['errors']} {s['in_reference']} {s['in_hypothesis']}"
        for s in report.word_stats()
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- shared cells

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


def _settings_line(report: ErrorReport) -> str:
    meta = report.meta
    decoding = meta.get("decoding") or {}
    digest = str(meta.get("checkpoint_sha256", ""))[:12]
    parts = [
        f"checkpoint {meta['checkpoint']}" if meta.get("checkpoint") else "",
        f"sha256 {digest}…" if digest else "",
        f"decoding {_decoding_text(decoding)}" if decoding else "",
        f"normalisation {report.normalize}",
        f"device {meta['device']}" if meta.get("device") else "",
    ]
    return ", ".join(p for p in parts if p)


def _decoding_text(decoding: dict) -> str:
    """ "greedy", or "beam (beam_size 16, lm_path x.arpa, lm_weight 0.5)": what was set."""
    method = str(decoding.get("method", "?"))
    if method == "greedy":
        return method
    keys = ("beam_size", "lm_path", "lm_weight", "word_bonus", "lexicon", "hotwords")
    details = ", ".join(f"{k} {decoding[k]}" for k in keys if decoding.get(k) not in (None, "", []))
    return f"{method} ({details})" if details else method


# ---------------------------------------------------------------------------- Markdown


def markdown_report(
    reports: Sequence[ErrorReport], curves: TrainingCurves | None = None, top: int = 10
) -> str:
    """A pull-request comment: overview of every set, then each set's tables (``top`` rows)."""
    lines = ["# Evaluation report", ""]
    if reports:
        lines += [_settings_line(reports[0]), ""]
    lines += markdown_table(OVERVIEW_HEADERS, [overview_cells(r) for r in reports])
    if curves is not None and curves.dev_steps:
        best = min(range(len(curves.dev_wer)), key=curves.dev_wer.__getitem__)
        lines += [
            "",
            f"Training run `{curves.folder}`: {len(curves.dev_steps)} dev evaluations, best dev "
            f"WER {100 * curves.dev_wer[best]:.2f} % at step {curves.dev_steps[best]:g}.",
        ]
    for report in reports:
        lines += ["", *_md_section(report, top)]
    return "\n".join(lines) + "\n"


def _md_section(report: ErrorReport, top: int) -> list[str]:
    t = report.total
    lines = [
        f"## {report.name}",
        "",
        f"**WER {100 * t.wer:.2f} %** (raw {100 * report.raw.rate:.2f} %), CER "
        f"{100 * report.chars.rate:.2f} %, SER {100 * t.sentence_error_rate:.2f} % over "
        f"{t.utterances} utterances and {t.words} words "
        f"({t.substitutions} sub, {t.deletions} del, {t.insertions} ins).",
        "",
        f"### By length ({report.length_unit})",
        "",
        *markdown_table(
            ["length", *SCLITE_HEADERS], [[r.label, *sclite_cells(r)] for r in report.by_length()]
        ),
    ]
    speakers = report.by_speaker()
    if speakers:
        rows = [[r.label, *sclite_cells(r)] for r in speakers[:top]]
        more = f" ({top} of {len(speakers)}, highest WER first)" if len(speakers) > top else ""
        lines += [
            "",
            f"### By speaker{more}",
            "",
            *markdown_table(["speaker", *SCLITE_HEADERS], rows),
        ]
    lines += ["", "### Most frequent errors", "", *_md_pairs(report, top)]
    worst = [u for u in report.worst_first() if u.errors][:top]
    if worst:
        rows = [[u.id, str(u.errors), str(u.words), f"`{u.context}`"] for u in worst]
        lines += [
            "",
            "### Worst utterances",
            "",
            *markdown_table(["utterance", "errors", "words", "alignment"], rows, "lrrl"),
        ]
    return lines


def _md_pairs(report: ErrorReport, top: int) -> list[str]:
    subs = [f"{r} → {h}" for (r, h), _ in report.substitution_pairs()[:top]]
    sub_n = [n for _, n in report.substitution_pairs()[:top]]
    dels, del_n = _columns(report.deletion_counts()[:top])
    ins, ins_n = _columns(report.insertion_counts()[:top])
    rows = []
    for i in range(max(len(subs), len(dels), len(ins))):
        row = []
        for words, counts in ((subs, sub_n), (dels, del_n), (ins, ins_n)):
            row += [words[i], str(counts[i])] if i < len(words) else ["", ""]
        rows.append(row)
    if not rows:
        return ["No errors."]
    headers = ["substitution", "n", "deletion", "n", "insertion", "n"]
    return markdown_table(headers, rows, "lrlrlr")


def _columns(pairs: list[tuple[str, int]]) -> tuple[list[str], list[int]]:
    return [w for w, _ in pairs], [n for _, n in pairs]


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = ""
) -> list[str]:
    """Lines of a Markdown table; ``align`` has an l or r per column (default: l then r's)."""
    align = align or "l" + "r" * (len(headers) - 1)

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "|".join("---" if a == "l" else "--:" for a in align) + "|"
    return [line(headers), rule, *(line(r) for r in rows)]


# ---------------------------------------------------------------------------- SVG plots

SUB_COLOUR, DEL_COLOUR, INS_COLOUR = "#e69f00", "#d55e00", "#0072b2"
SERIES_COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9")
PLOT_WIDTH = 560


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high], 1, 2, 2.5 or 5 times a power of ten apart."""
    if not high > low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * 0.999999)
    first = math.floor(low / step + 1e-9) * step
    n = math.ceil((high - first) / step - 1e-9)
    return [round(first + i * step, 12) for i in range(n + 1)]


def log_ticks(low: float, high: float) -> list[float]:
    """1-2-5 ticks per decade (1 only past four decades) from just below low to above high."""
    low_exp, high_exp = math.floor(math.log10(low)), math.ceil(math.log10(high))
    steps = (1, 2, 5) if high_exp - low_exp <= 4 else (1,)
    ticks = [m * 10.0**e for e in range(low_exp, high_exp + 1) for m in steps]
    lower = max(t for t in ticks if t <= low * 1.000001)
    upper = min(t for t in ticks if t >= high * 0.999999)
    return [t for t in ticks if lower <= t <= upper]


def _tick_label(value: float, percent: bool = False) -> str:
    if percent:
        return f"{100 * value:.4g}%"
    if abs(value) >= 1000 and value % 100 == 0:
        return f"{value / 1000:g}k"
    return f"{value:.4g}"


def _svg(height: float, title: str, parts: list[str]) -> str:
    # No xmlns: inline SVG in HTML5 does not need it, and the page names no URL at all.
    return (
        f'<svg class="plot" viewBox="0 0 {PLOT_WIDTH} {height:.0f}" role="img" '
        f'aria-label="{_esc(title)}"><title>{_esc(title)}</title>'
        f'<text class="plot-title" x="{PLOT_WIDTH / 2}" y="20" text-anchor="middle">'
        f"{_esc(title)}</text>{''.join(parts)}</svg>"
    )


def svg_hbars(items: Sequence[tuple[str, float, str]], title: str, percent: bool = False) -> str:
    """Horizontal bars, one per (label, value, colour), each value printed at its bar's end."""
    left, right, top, row = 170, 70, 36, 22
    height = top + row * len(items) + 30
    ticks = nice_ticks(0.0, max([v for _, v, _ in items] + [0.0]) or 1.0)

    def x(value: float) -> float:
        return left + (PLOT_WIDTH - left - right) * value / ticks[-1]

    parts = []
    for tick in ticks:
        parts.append(
            f'<line class="grid" x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{top - 4}" '
            f'y2="{height - 26}"/><text class="tick" x="{x(tick):.1f}" y="{height - 12}" '
            f'text-anchor="middle">{_tick_label(tick, percent)}</text>'
        )
    for i, (label, value, colour) in enumerate(items):
        y = top + i * row
        shown = f"{100 * value:.1f}%" if percent else f"{value:g}"
        parts.append(
            f'<text x="{left - 6}" y="{y + row / 2 + 4:.1f}" text-anchor="end">'
            f"{_esc(_clip(label, 24))}</text>"
            f'<rect x="{left}" y="{y + 3}" width="{max(x(value) - left, 0.5):.1f}" '
            f'height="{row - 6}" fill="{colour}"><title>{_esc(label)}: {shown}</title></rect>'
            f'<text class="value" x="{x(value) + 4:.1f}" y="{y + row / 2 + 4:.1f}">{shown}</text>'
        )
    return _svg(height, title, parts)


def svg_vbars(items: Sequence[tuple[str, float, str]], title: str, percent: bool = False) -> str:
    """Vertical bars, one per (label, value, note); the note is printed under the label."""
    height, left, right, top, bottom = 300, 56, 16, 40, 50
    ticks = nice_ticks(0.0, max([v for _, v, _ in items] + [0.0]) or 1.0)
    slot = (PLOT_WIDTH - left - right) / max(len(items), 1)
    bar = min(slot * 0.7, 90)

    def y(value: float) -> float:
        return top + (height - top - bottom) * (1 - value / ticks[-1])

    parts = [_y_grid(ticks, y, left, percent)]
    for i, (label, value, note) in enumerate(items):
        centre = left + slot * (i + 0.5)
        shown = f"{100 * value:.1f}%" if percent else f"{value:g}"
        parts.append(
            f'<rect x="{centre - bar / 2:.1f}" y="{y(value):.1f}" width="{bar:.1f}" '
            f'height="{max(y(0) - y(value), 0.5):.1f}" fill="{SERIES_COLOURS[0]}">'
            f"<title>{_esc(label)}: {shown} ({_esc(note)})</title></rect>"
            f'<text class="value" x="{centre:.1f}" y="{y(value) - 4:.1f}" text-anchor="middle">'
            f"{shown}</text>"
            f'<text x="{centre:.1f}" y="{height - bottom + 16}" text-anchor="middle">'
            f"{_esc(label)}</text>"
            f'<text class="tick" x="{centre:.1f}" y="{height - bottom + 31}" '
            f'text-anchor="middle">{_esc(note)}</text>'
        )
    return _svg(height, title, parts)


def _y_grid(ticks: list[float], y: Callable[[float], float], left: float, percent: bool) -> str:
    return "".join(
        f'<line class="grid" x1="{left}" x2="{PLOT_WIDTH - 16}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>'
        f'<text class="tick" x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">'
        f"{_tick_label(t, percent)}</text>"
        for t in ticks
    )


Series = tuple[str, Sequence[float], Sequence[float]]


def svg_lines(
    series: Sequence[Series], title: str, x_label: str, log_y: bool = False, percent: bool = False
) -> str:
    """Line chart of (name, xs, ys) series; a log y axis drops values that are not positive."""
    height, left, top, bottom = 300, 60, 40, 46
    series = [(n, *_thin(*_finite(xs, ys, log_y))) for n, xs, ys in series]
    xs = [v for _, s, _ in series for v in s] or [0.0, 1.0]
    ys = [v for _, _, s in series for v in s] or [1.0]
    x_ticks = nice_ticks(min(xs), max(xs))
    y_ticks = log_ticks(min(ys), max(ys)) if log_y else nice_ticks(min(0.0, min(ys)), max(ys))
    fy = math.log10 if log_y else float
    y_low, y_high = fy(y_ticks[0]), fy(y_ticks[-1])

    def x(value: float) -> float:
        span = (x_ticks[-1] - x_ticks[0]) or 1.0
        return left + (PLOT_WIDTH - left - 16) * (value - x_ticks[0]) / span

    def y(value: float) -> float:
        return top + (height - top - bottom) * (1 - (fy(value) - y_low) / ((y_high - y_low) or 1))

    parts = [_y_grid(y_ticks, y, left, percent)]
    parts += [
        f'<text class="tick" x="{x(t):.1f}" y="{height - bottom + 16}" text-anchor="middle">'
        f"{_tick_label(t)}</text>"
        for t in x_ticks
    ]
    parts.append(
        f'<text x="{(left + PLOT_WIDTH) / 2:.0f}" y="{height - 8}" text-anchor="middle">'
        f"{_esc(x_label)}</text>"
    )
    for i, (name, sx, sy) in enumerate(series):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        points = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(sx, sy, strict=True))
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>'
        )
        if len(sx) <= 40:  # few points (dev evaluations): mark each one
            parts += [
                f'<circle cx="{x(a):.1f}" cy="{y(b):.1f}" r="3" fill="{colour}">'
                f"<title>{_esc(name)} {_tick_label(b, percent)} at {a:g}</title></circle>"
                for a, b in zip(sx, sy, strict=True)
            ]
        if len(series) > 1:
            lx = PLOT_WIDTH - 130
            parts.append(
                f'<rect x="{lx}" y="{top + 4 + 16 * i}" width="14" height="4" fill="{colour}"/>'
                f'<text x="{lx + 20}" y="{top + 10 + 16 * i}">{_esc(name)}</text>'
            )
    return _svg(height, title, parts)


def _finite(xs: Sequence[float], ys: Sequence[float], positive: bool) -> tuple[list, list]:
    keep = [
        (a, b)
        for a, b in zip(xs, ys, strict=True)
        if math.isfinite(a) and math.isfinite(b) and (b > 0 or not positive)
    ]
    return [a for a, _ in keep], [b for _, b in keep]


def _thin(xs: list[float], ys: list[float], limit: int = 600) -> tuple[list, list]:
    # Thousands of logged steps would bloat the page without changing the picture.
    stride = max(1, math.ceil(len(xs) / limit))
    keep = list(range(0, len(xs), stride))
    if keep and keep[-1] != len(xs) - 1:
        keep.append(len(xs) - 1)  # the curve ends where training ended
    return [xs[i] for i in keep], [ys[i] for i in keep]


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


# ---------------------------------------------------------------------------- HTML page

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1180px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 4px;
     margin-top: 40px; } h3 { margin: 24px 0 8px; }
.settings { color: #555; margin: 4px 0 12px; word-break: break-all; }
table { border-collapse: collapse; margin: 4px 0 12px; }
th, td { padding: 3px 9px; border-bottom: 1px solid #e4e4e4; text-align: left;
         vertical-align: top; }
th { background: #f3f3f3; white-space: nowrap; } td.num, th.num { text-align: right;
     font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 6px 12px; min-width: 96px; }
.card b { display: block; font-size: 20px; } .card span { color: #666; font-size: 12px; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(500px, 1fr));
         gap: 12px; }
figure { margin: 0; border: 1px solid #e4e4e4; border-radius: 6px; padding: 4px; }
svg.plot { width: 100%; height: auto; display: block; }
svg text { font: 12px system-ui, sans-serif; fill: #333; }
svg .plot-title { font-size: 14px; font-weight: 600; } svg .tick { fill: #666; font-size: 11px; }
svg .value { font-size: 11px; } svg .grid { stroke: #e6e6e6; }
.pairs { display: flex; flex-wrap: wrap; gap: 24px; }
.align { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 13px; }
.sub { background: #fde7c2; } del { background: #f8d3c6; color: #8a2b0a; }
ins { background: #cfe3f3; color: #0a4a7a; text-decoration: none; }
.legend span, .legend del, .legend ins { margin: 0 6px; } .note { color: #666; font-size: 13px; }
"""


def html_report(
    reports: Sequence[ErrorReport],
    curves: TrainingCurves | None = None,
    title: str = "Evaluation report",
    max_rows: int = 200,
) -> str:
    """One self-contained page: overview, training curves, then each set's plots and tables."""
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
    ]
    if reports:
        parts.append(f'<p class="settings">{_esc(_settings_line(reports[0]))}</p>')
    rows = [
        [f'<a href="#set-{_esc(r.name)}">{_esc(r.name)}</a>', *map(_esc, overview_cells(r)[1:])]
        for r in reports
    ]
    parts.append(
        '<section id="overview"><h2>Overview</h2>'
        + _html_table(OVERVIEW_HEADERS, rows, "overview", first_text=1)
        + '<p class="note">WER on normalised text; raw WER on the texts as written (white '
        "space collapsed only). RTF: decoding seconds per audio second. SER: share of "
        "utterances with at least one error.</p></section>"
    )
    if curves is not None:
        parts.append(_html_curves(curves))
    parts += [_html_set(r, max_rows) for r in reports]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_curves(curves: TrainingCurves) -> str:
    plots = []
    if curves.steps:
        plots.append(
            svg_lines([("loss", curves.steps, curves.loss)], "Training loss", "step", log_y=True)
        )
        plots.append(svg_lines([("lr", curves.steps, curves.lr)], "Learning rate", "step"))
    if curves.dev_steps:
        dev = [("WER", curves.dev_steps, curves.dev_wer), ("CER", curves.dev_steps, curves.dev_cer)]
        plots.append(svg_lines(dev, "Dev WER and CER", "step", percent=True))
    figures = "".join(f"<figure>{p}</figure>" for p in plots)
    return (
        f'<section id="training"><h2>Training run</h2><p class="settings">'
        f'{_esc(curves.folder)}</p><div class="plots">{figures}</div></section>'
    )


def _html_set(report: ErrorReport, max_rows: int) -> str:
    t, meta = report.total, report.meta
    cards = [
        (f"{100 * t.wer:.2f} %", f"WER ({report.normalize})"),
        (f"{100 * report.raw.rate:.2f} %", "raw WER"),
        (f"{100 * report.chars.rate:.2f} %", "CER"),
        (f"{100 * t.sentence_error_rate:.2f} %", "sentence errors"),
        (f"{t.substitutions} / {t.deletions} / {t.insertions}", "sub / del / ins"),
        (f"{t.utterances} / {t.words}", "utterances / words"),
    ]
    if meta.get("real_time_factor") is not None:
        cards.append((f"{meta['real_time_factor']:.4f}", "real-time factor"))
    if meta.get("peak_rss_mb") is not None:
        cards.append((f"{meta['peak_rss_mb']:.0f} MB", "peak memory (RSS)"))
    card_html = "".join(
        f'<div class="card"><b>{_esc(v)}</b><span>{_esc(k)}</span></div>' for v, k in cards
    )
    return (
        f'<section class="set" id="set-{_esc(report.name)}"><h2>{_esc(report.name)}</h2>'
        f'<div class="cards">{card_html}</div>'
        f'<p class="settings">{_esc(meta.get("manifest", ""))}</p>'
        f"{_html_settings(report)}"
        f'<div class="plots">{_html_plots(report)}</div>'
        + _html_tables(report, max_rows)
        + "</section>"
    )


def _html_settings(report: ErrorReport) -> str:
    """Every setting and measurement behind the numbers, folded away."""
    items = {"normalize": report.normalize, "length buckets": report.length_unit}
    for key, value in report.meta.items():
        if isinstance(value, dict):
            items.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            items[key] = value
    rows = [[_esc(k), _esc(v)] for k, v in items.items()]
    table = _html_table(["setting", "value"], rows, "settings-table", last_text=True)
    return f"<details><summary>Settings and measurements</summary>{table}</details>"


def _html_plots(report: ErrorReport) -> str:
    lengths = report.by_length()
    plots = [
        svg_vbars(
            [(r.label, r.wer, f"{r.utterances} utts") for r in lengths],
            f"WER by utterance length ({report.length_unit})",
            percent=True,
        )
    ]
    confusions = _top_confusions(report, 12)
    if confusions:
        plots.append(
            svg_hbars(confusions, "Most frequent errors (count)")
            + f'<figcaption class="legend note"><span style="color:{SUB_COLOUR}">■</span> '
            f'substituted <span style="color:{DEL_COLOUR}">■</span> deleted (word → *) '
            f'<span style="color:{INS_COLOUR}">■</span> inserted (* → word)</figcaption>'
        )
    speakers = report.by_speaker()
    if len(speakers) > 1:
        rows = [(r.label, r.wer, SERIES_COLOURS[0]) for r in speakers[:25]]
        more = f", worst {len(rows)} of {len(speakers)}" if len(speakers) > len(rows) else ""
        plots.append(svg_hbars(rows, f"WER by speaker{more}", percent=True))
    return "".join(f"<figure>{p}</figure>" for p in plots)


def _top_confusions(report: ErrorReport, top: int) -> list[tuple[str, float, str]]:
    items = [(f"{r} → {h}", float(n), SUB_COLOUR) for (r, h), n in report.substitution_pairs()]
    items += [(f"{w} → *", float(n), DEL_COLOUR) for w, n in report.deletion_counts()]
    items += [(f"* → {w}", float(n), INS_COLOUR) for w, n in report.insertion_counts()]
    return sorted(items, key=lambda item: -item[1])[:top]  # stable: ties keep kind order


def _html_tables(report: ErrorReport, max_rows: int) -> str:
    length_rows = [[_esc(r.label), *sclite_cells(r)] for r in report.by_length()]
    parts = [
        f"<h3>By length ({_esc(report.length_unit)})</h3>",
        _html_table(["length", *SCLITE_HEADERS], length_rows, "lengths"),
    ]
    speakers = report.by_speaker()
    if speakers:
        rows = [[_esc(r.label), *sclite_cells(r)] for r in speakers]
        parts += [
            "<h3>By speaker</h3>",
            _html_table(["speaker", *SCLITE_HEADERS], rows, "speakers"),
        ]
    parts += ["<h3>Most frequent errors</h3>", _html_pairs(report, 25)]
    parts.append(_html_utterances(report, max_rows))
    return "".join(parts)


def _html_utterances(report: ErrorReport, max_rows: int) -> str:
    """The utterances with errors, worst first, each alignment coloured."""
    wrong = [u for u in report.worst_first() if u.errors]
    shown = wrong[:max_rows]
    rows = [
        [
            _esc(u.id),
            _esc(u.speaker or ""),
            "" if u.duration is None else f"{u.duration:.2f}",
            str(u.errors),
            str(u.words),
            f"{100 * u.wer:.1f}",
            _html_alignment(u.alignment),
        ]
        for u in shown
    ]
    count = f"{len(shown)} of {len(wrong)}" if len(wrong) > len(shown) else str(len(wrong))
    correct = len(report.utterances) - len(wrong)
    unlisted = f"{correct} utterances without errors are not listed. " if correct else ""
    headers = ["utterance", "speaker", "s", "errors", "words", "WER %", "alignment"]
    return (
        f"<h3>Utterances with errors, most first ({count})</h3>"
        f'<p class="legend note">{unlisted}Every utterance is in the JSON and TSV reports. '
        '<span class="sub">(ref→hyp) substituted</span><del>deleted</del> '
        "<ins>inserted</ins></p>"
        + _html_table(headers, rows, "utterances", first_text=2, last_text=True)
    )


def _html_pairs(report: ErrorReport, top: int) -> str:
    subs = [[_esc(r), _esc(h), str(n)] for (r, h), n in report.substitution_pairs()[:top]]
    dels = [[_esc(w), str(n)] for w, n in report.deletion_counts()[:top]]
    ins = [[_esc(w), str(n)] for w, n in report.insertion_counts()[:top]]
    # The tables' class must not be "pairs": that is the flex box holding them.
    tables = [
        _html_table(["reference", "hypothesis", "count"], subs, "substitutions", first_text=2)
        if subs
        else '<p class="note">none</p>',
        _html_table(["deleted", "count"], dels, "deletions")
        if dels
        else '<p class="note">none</p>',
        _html_table(["inserted", "count"], ins, "insertions")
        if ins
        else '<p class="note">none</p>',
    ]
    titles = ("Substitutions", "Deletions", "Insertions")
    return (
        '<div class="pairs">'
        + "".join(f"<div><b>{t}</b>{table}</div>" for t, table in zip(titles, tables, strict=True))
        + "</div>"
    )


def _html_alignment(alignment: Sequence[WordPair]) -> str:
    words = []
    for ref, hyp in alignment:
        if ref == hyp:
            words.append(_esc(ref))
        elif hyp is None:
            words.append(f"<del>{_esc(ref)}</del>")
        elif ref is None:
            words.append(f"<ins>{_esc(hyp)}</ins>")
        else:
            words.append(f'<span class="sub">({_esc(ref)}→{_esc(hyp)})</span>')
    return f'<span class="align">{" ".join(words)}</span>'


def _html_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    cls: str,
    first_text: int = 1,
    last_text: bool = False,
) -> str:
    """A table of cells that are already HTML; the first ``first_text`` columns (and the last
    with ``last_text``) hold text, the others numbers (right-aligned)."""

    def kind(i: int) -> str:
        text = i < first_text or (last_text and i == len(headers) - 1)
        return "" if text else ' class="num"'

    head = "".join(f"<th{kind(i)}>{_esc(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f"<td{kind(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
