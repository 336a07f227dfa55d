"""Two evaluation reports side by side, and whether B really is better than A.

:func:`compare_reports` pairs the utterances of two ``<name>.report.json`` files written by
``asr-evaluate`` on the same manifest, puts their numbers side by side with deltas, and runs
a paired bootstrap over utterances (Koehn 2004; Bisani and Ney 2004): draw utterances with
replacement, recompute both corpus WERs on the same draw, and count how often B's is lower.
The share of draws where B wins is P(B better); the middle ``confidence`` of the WER
differences is the confidence interval. A difference is called significant when that
interval leaves out zero.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from asr.report import REPORT_FORMAT
from asr.report_text import markdown_table

#: (key in the summary, label, shown as a percentage)
METRICS = (
    ("wer", "WER %", True),
    ("wer_raw", "raw WER %", True),
    ("cer", "CER %", True),
    ("sentence_error_rate", "SER %", True),
    ("utterances", "utterances", False),
    ("words", "words", False),
    ("real_time_factor", "real-time factor", False),
    ("peak_rss_mb", "peak RSS MB", False),
)
COUNTS = ("substitutions", "deletions", "insertions")


@dataclass
class BootstrapResult:
    """A paired bootstrap of the WER difference B - A (negative: B makes fewer errors)."""

    wer_a: float
    wer_b: float
    delta: float
    ci_low: float
    ci_high: float
    p_b_better: float
    confidence: float
    resamples: int
    seed: int
    utterances: int

    def verdict(self, a: str = "A", b: str = "B") -> str:
        """One sentence a reader can quote."""
        interval = (
            f"WER {100 * self.delta:+.2f} points, {100 * self.confidence:g} % interval "
            f"[{100 * self.ci_low:+.2f}, {100 * self.ci_high:+.2f}]"
        )
        odds = f"P({b} better) = {self.p_b_better:.3f} over {self.resamples} resamples"
        if self.ci_high < 0:
            return f"{b} is better than {a}: {interval}; {odds}."
        if self.ci_low > 0:
            return f"{b} is worse than {a}: {interval}; {odds}."
        return f"No significant difference between {a} and {b}: {interval}; {odds}."


def paired_bootstrap(
    errors_a: Sequence[int],
    errors_b: Sequence[int],
    words: Sequence[int],
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Bootstrap the corpus-WER difference of two systems scored on the same utterances.

    ``errors_a[i]``, ``errors_b[i]`` are the word errors of each system on utterance i and
    ``words[i]`` its reference words. A draw where both WERs tie counts half to each side,
    so two identical systems get P(B better) = 0.5.
    """
    e_a, e_b, n = (np.asarray(x, dtype=np.int64) for x in (errors_a, errors_b, words))
    if not len(n) or not (len(e_a) == len(e_b) == len(n)):
        raise ValueError("paired bootstrap needs the same non-empty set of utterances")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    # Chunks keep the index matrix small for large test sets.
    for start in range(0, resamples, 200):
        size = min(200, resamples - start)
        draw = rng.integers(0, len(n), size=(size, len(n)))
        total = np.maximum(n[draw].sum(axis=1), 1)
        deltas[start : start + size] = (e_b[draw].sum(axis=1) - e_a[draw].sum(axis=1)) / total
    tail = (1 - confidence) / 2
    low, high = np.quantile(deltas, [tail, 1 - tail])
    total = max(int(n.sum()), 1)
    wer_a, wer_b = e_a.sum() / total, e_b.sum() / total
    return BootstrapResult(
        wer_a=round(float(wer_a), 6),
        wer_b=round(float(wer_b), 6),
        delta=round(float(wer_b - wer_a), 6),
        ci_low=round(float(low), 6),
        ci_high=round(float(high), 6),
        p_b_better=round(float(np.mean(deltas < 0) + 0.5 * np.mean(deltas == 0)), 4),
        confidence=confidence,
        resamples=resamples,
        seed=seed,
        utterances=len(n),
    )


def load_reports(path: str | Path) -> dict[str, dict]:
    """{name: report} from one ``*.report.json`` file or every one in a folder."""
    path = Path(path)
    files = sorted(path.glob("*.report.json")) if path.is_dir() else [path]
    if not files or not files[0].is_file():
        raise ValueError(f"{path}: no *.report.json report found (run asr-evaluate first)")
    reports = {}
    for file in files:
        try:
            report = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{file}: not JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
            raise ValueError(f"{file}: not an asr-evaluate report ({REPORT_FORMAT})")
        reports[report["name"]] = report
    return reports


def compare_reports(
    a: dict,
    b: dict,
    label_a: str = "A",
    label_b: str = "B",
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """Side-by-side numbers, per-speaker deltas, biggest changes and the paired bootstrap."""
    norm_a, norm_b = a["summary"].get("normalize"), b["summary"].get("normalize")
    if norm_a != norm_b:
        raise ValueError(f"reports normalise text differently ({norm_a} vs {norm_b})")
    pairs = _paired_utterances(a, b)
    result = paired_bootstrap(
        [ua["errors"] for ua, _ in pairs],
        [ub["errors"] for _, ub in pairs],
        [ua["words"] for ua, _ in pairs],
        resamples,
        seed,
        confidence,
    )
    changes = [ub["errors"] - ua["errors"] for ua, ub in pairs]
    return {
        "name": a["name"] if a["name"] == b["name"] else f"{a['name']} vs {b['name']}",
        "a": label_a,
        "b": label_b,
        "metrics": _metric_rows(a["summary"], b["summary"]),
        "bootstrap": {**asdict(result), "verdict": result.verdict(label_a, label_b)},
        "utterances": {
            "paired": len(pairs),
            "only_in_a": len(a["utterances"]) - len(pairs),
            "only_in_b": len(b["utterances"]) - len(pairs),
            "better_in_b": sum(c < 0 for c in changes),
            "worse_in_b": sum(c > 0 for c in changes),
            "unchanged": sum(c == 0 for c in changes),
        },
        "by_speaker": _speaker_rows(a, b),
        "biggest_changes": _biggest_changes(pairs, 10),
    }


def _paired_utterances(a: dict, b: dict) -> list[tuple[dict, dict]]:
    rows_b = {u["id"]: u for u in b["utterances"]}
    pairs = [(u, rows_b[u["id"]]) for u in a["utterances"] if u["id"] in rows_b]
    if not pairs:
        raise ValueError(f"{a['name']} and {b['name']} share no utterance ids")
    for ua, ub in pairs:
        if ua["reference"] != ub["reference"]:
            raise ValueError(
                f"utterance {ua['id']} has different references ({ua['reference']!r} vs "
                f"{ub['reference']!r}): the reports are not of the same data"
            )
    return sorted(pairs, key=lambda pair: pair[0]["id"])  # draws must not depend on file order


def _metric_rows(a: dict, b: dict) -> list[dict]:
    rows = []
    for key, label, percent in METRICS:
        rows.append({"metric": key, "label": label, "percent": percent} | _delta(a, b, key))
    for key in COUNTS:
        row = _delta(a.get("word_errors", {}), b.get("word_errors", {}), key)
        rows.append({"metric": key, "label": key, "percent": False} | row)
    return rows


def _delta(a: dict, b: dict, key: str) -> dict:
    va, vb = a.get(key), b.get(key)
    delta = None if va is None or vb is None else round(vb - va, 6)
    return {"a": va, "b": vb, "delta": delta}


def _speaker_rows(a: dict, b: dict) -> list[dict]:
    wer_a = {row["label"]: row["wer"] for row in a.get("by_speaker", [])}
    wer_b = {row["label"]: row["wer"] for row in b.get("by_speaker", [])}
    rows = [
        {"speaker": s, "a": wer_a[s], "b": wer_b[s], "delta": round(wer_b[s] - wer_a[s], 6)}
        for s in wer_a
        if s in wer_b
    ]
    return sorted(rows, key=lambda r: (r["delta"], r["speaker"]))


def _biggest_changes(pairs: list[tuple[dict, dict]], top: int) -> list[dict]:
    changed = [(ua, ub) for ua, ub in pairs if ua["errors"] != ub["errors"]]
    changed.sort(key=lambda p: (-abs(p[1]["errors"] - p[0]["errors"]), p[0]["id"]))
    return [
        {
            "id": ua["id"],
            "errors_a": ua["errors"],
            "errors_b": ub["errors"],
            "context_a": ua["context"],
            "context_b": ub["context"],
        }
        for ua, ub in changed[:top]
    ]


def compare_paths(
    path_a: str | Path,
    path_b: str | Path,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[dict]:
    """Compare two report files, or every set present in both of two report folders."""
    reports_a, reports_b = load_reports(path_a), load_reports(path_b)
    label_a, label_b = _label(path_a), _label(path_b)
    if label_a == label_b:
        label_a, label_b = "A", "B"
    if len(reports_a) == len(reports_b) == 1:  # two files: compare them whatever their names
        pairs = [(next(iter(reports_a.values())), next(iter(reports_b.values())))]
    else:
        pairs = [(reports_a[n], reports_b[n]) for n in reports_a if n in reports_b]
        if not pairs:
            raise ValueError(f"{path_a} and {path_b} have no report names in common")
    return [compare_reports(a, b, label_a, label_b, resamples, seed, confidence) for a, b in pairs]


def _label(path: str | Path) -> str:
    """A short name for a side: the folder's name, or the file's folder name."""
    path = Path(path).resolve()
    return path.name if path.is_dir() else path.parent.name


def comparison_markdown(comparisons: Sequence[dict]) -> str:
    """The comparisons as Markdown: verdict, side-by-side table, speakers, biggest changes."""
    lines = []
    for comp in comparisons:
        a, b = comp["a"], comp["b"]
        counts = comp["utterances"]
        lines += [
            f"## {comp['name']}: {a} vs {b}",
            "",
            f"**{comp['bootstrap']['verdict']}**",
            "",
            f"{counts['paired']} utterances paired: {counts['better_in_b']} better in {b}, "
            f"{counts['worse_in_b']} worse, {counts['unchanged']} unchanged.",
            "",
            *markdown_table(["", a, b, "delta"], [_metric_cells(r) for r in comp["metrics"]]),
        ]
        if comp["by_speaker"]:
            rows = [
                [
                    r["speaker"],
                    *(f"{100 * r[k]:.2f}" for k in ("a", "b")),
                    f"{100 * r['delta']:+.2f}",
                ]
                for r in comp["by_speaker"]
            ]
            lines += [
                "",
                "WER % by speaker:",
                "",
                *markdown_table(["speaker", a, b, "delta"], rows),
            ]
        if comp["biggest_changes"]:
            rows = [
                [
                    c["id"],
                    f"{c['errors_a']} → {c['errors_b']}",
                    f"`{c['context_a']}`",
                    f"`{c['context_b']}`",
                ]
                for c in comp["biggest_changes"]
            ]
            lines += [
                "",
                "Biggest changes:",
                "",
                *markdown_table(["utterance", "errors", a, b], rows, "lrll"),
            ]
        lines.append("")
    return "\n".join(lines)


def _metric_cells(row: dict) -> list[str]:
    def show(value: float | None, sign: bool = False) -> str:
        if value is None:
            return ""
        if row["percent"]:
            value = 100 * value
            return f"{value:+.2f}" if sign else f"{value:.2f}"
        return f"{value:+g}" if sign else f"{value:g}"

    return [row["label"], show(row["a"]), show(row["b"]), show(row["delta"], sign=True)]
