"""The HTML report: one self-contained page with inline SVG plots.

:func:`html_report` renders :class:`asr.report.ErrorReport` objects (and optionally a
run's :class:`asr.report.TrainingCurves`) as a single page: no scripts, no external
resources, so it can be mailed, archived or opened offline. The plots (:func:`svg_hbars`,
:func:`svg_vbars`, :func:`svg_lines`) are plain SVG strings built here, with round tick
values from :func:`nice_ticks` and :func:`log_ticks`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Sequence

from asr.report import (
    OVERVIEW_HEADERS,
    SCLITE_HEADERS,
    ErrorReport,
    TrainingCurves,
    WordPair,
    overview_cells,
    sclite_rows,
    settings_line,
)

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


def _bar_ticks(items: Sequence[tuple[str, float, str]]) -> list[float]:
    """Ticks from zero past the largest (label, value, _) value (to 1 if there is none)."""
    return nice_ticks(0.0, max([v for _, v, _ in items] + [0.0]) or 1.0)


def _bar_value(value: float, percent: bool) -> str:
    """A bar's value as printed beside it: one decimal of a percentage, or as it is."""
    return f"{100 * value:.1f}%" if percent else f"{value:g}"


def svg_hbars(items: Sequence[tuple[str, float, str]], title: str, percent: bool = False) -> str:
    """Horizontal bars, one per (label, value, colour), each value printed at its bar's end."""
    left, right, top, row = 170, 70, 36, 22
    height = top + row * len(items) + 30
    ticks = _bar_ticks(items)

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
        shown = _bar_value(value, percent)
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
    ticks = _bar_ticks(items)
    slot = (PLOT_WIDTH - left - right) / max(len(items), 1)
    bar = min(slot * 0.7, 90)

    def y(value: float) -> float:
        return top + (height - top - bottom) * (1 - value / ticks[-1])

    parts = [_y_grid(ticks, y, left, percent)]
    for i, (label, value, note) in enumerate(items):
        centre = left + slot * (i + 0.5)
        shown = _bar_value(value, percent)
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
        parts.append(f'<p class="settings">{_esc(settings_line(reports[0]))}</p>')
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
    figures = _figures(plots)
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
    rows = _text_rows(items.items())
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
    return _figures(plots)


def _top_confusions(report: ErrorReport, top: int) -> list[tuple[str, float, str]]:
    items = [(f"{r} → {h}", float(n), SUB_COLOUR) for (r, h), n in report.substitution_pairs()]
    items += [(f"{w} → *", float(n), DEL_COLOUR) for w, n in report.deletion_counts()]
    items += [(f"* → {w}", float(n), INS_COLOUR) for w, n in report.insertion_counts()]
    return sorted(items, key=lambda item: -item[1])[:top]  # stable: ties keep kind order


def _html_tables(report: ErrorReport, max_rows: int) -> str:
    length_rows = _text_rows(sclite_rows(report.by_length()))
    parts = [
        f"<h3>By length ({_esc(report.length_unit)})</h3>",
        _html_table(["length", *SCLITE_HEADERS], length_rows, "lengths"),
    ]
    speakers = report.by_speaker()
    if speakers:
        rows = _text_rows(sclite_rows(speakers))
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
    # (title, headers, rows, table class); the class must not be "pairs": that is the
    # flex box holding the tables.
    kinds = [
        (
            "Substitutions",
            ["reference", "hypothesis", "count"],
            [(r, h, n) for (r, h), n in report.substitution_pairs()[:top]],
            "substitutions",
        ),
        ("Deletions", ["deleted", "count"], report.deletion_counts()[:top], "deletions"),
        ("Insertions", ["inserted", "count"], report.insertion_counts()[:top], "insertions"),
    ]
    parts = []
    for title, headers, rows, cls in kinds:
        table = (
            _html_table(headers, _text_rows(rows), cls, first_text=len(headers) - 1)
            if rows
            else '<p class="note">none</p>'
        )
        parts.append(f"<div><b>{title}</b>{table}</div>")
    return '<div class="pairs">' + "".join(parts) + "</div>"


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


def _text_rows(rows: Iterable[Iterable[object]]) -> list[list[str]]:
    """Rows of plain values (text or numbers) as HTML cells, each escaped."""
    return [[_esc(cell) for cell in row] for row in rows]


def _figures(plots: Sequence[str]) -> str:
    return "".join(f"<figure>{p}</figure>" for p in plots)


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
