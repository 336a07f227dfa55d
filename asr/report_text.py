"""Plain-text renderings of :class:`asr.report.ErrorReport`: the errors file and Markdown.

:func:`errors_text` writes icefall's errors file (totals, each utterance in context, ranked
pairs, per-word statistics); :func:`markdown_report` a pull-request comment over several
sets; :func:`markdown_table` is the table helper both use, and so does :mod:`asr.compare`.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import zip_longest

from asr.report import (
    OVERVIEW_HEADERS,
    SCLITE_HEADERS,
    ErrorReport,
    TrainingCurves,
    overview_cells,
    sclite_rows,
    settings_line,
)

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


# ---------------------------------------------------------------------------- Markdown


def markdown_report(
    reports: Sequence[ErrorReport], curves: TrainingCurves | None = None, top: int = 10
) -> str:
    """A pull-request comment: overview of every set, then each set's tables (``top`` rows)."""
    lines = ["# Evaluation report", ""]
    if reports:
        lines += [settings_line(reports[0]), ""]
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
        *markdown_table(["length", *SCLITE_HEADERS], sclite_rows(report.by_length())),
    ]
    speakers = report.by_speaker()
    if speakers:
        rows = sclite_rows(speakers[:top])
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
    """The top substitutions, deletions and insertions side by side, (word, count) each."""
    columns = [
        [(f"{r} → {h}", n) for (r, h), n in report.substitution_pairs()[:top]],
        report.deletion_counts()[:top],
        report.insertion_counts()[:top],
    ]
    rows = [
        [cell for word, n in line for cell in (word, str(n))]
        for line in zip_longest(*columns, fillvalue=("", ""))
    ]
    if not rows:
        return ["No errors."]
    headers = ["substitution", "n", "deletion", "n", "insertion", "n"]
    return markdown_table(headers, rows, "lrlrlr")


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = ""
) -> list[str]:
    """Lines of a Markdown table; ``align`` has an l or r per column (default: l then r's)."""
    align = align or "l" + "r" * (len(headers) - 1)

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "|".join("---" if a == "l" else "--:" for a in align) + "|"
    return [line(headers), rule, *(line(r) for r in rows)]
