"""Writing transcripts as files, whisper-style: txt, json, srt, vtt and tsv.

- ``txt``: the text, one line.
- ``json``: ``{"text", "duration", "words": [{"word", "start", "end", "confidence"}], ...}``
  (plus ``score`` and, from an n-best search, ``alternatives``).
- ``srt`` / ``vtt``: subtitle cues made of consecutive words; a cue closes at a pause longer
  than MAX_GAP seconds, before it would pass MAX_CHARS characters or MAX_SECONDS seconds.
- ``tsv``: one row per cue, ``start``, ``end`` (integer milliseconds, as whisper writes them)
  and ``text``.

Times are seconds from the start of the file. Files are written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from asr.io_utils import atomic_write_text
from asr.transcribe import Transcript

FORMATS = ("txt", "json", "srt", "vtt", "tsv")
MAX_CHARS = 42  # one subtitle line, the common broadcast limit
MAX_SECONDS = 6.0
MAX_GAP = 1.0


@dataclass
class Cue:
    """One subtitle: consecutive words between ``start`` and ``end`` seconds."""

    start: float
    end: float
    text: str


def make_cues(transcript: Transcript) -> list[Cue]:
    """The transcript's words grouped into subtitle cues (one cue if it has no words)."""
    if not transcript.words:
        text = transcript.text.strip()
        return [Cue(0.0, transcript.duration, text)] if text else []
    cues: list[Cue] = []
    group = [transcript.words[0]]
    for word in transcript.words[1:]:
        text = " ".join(w.word for w in group) + " " + word.word
        if (
            word.start - group[-1].end > MAX_GAP
            or len(text) > MAX_CHARS
            or word.end - group[0].start > MAX_SECONDS
        ):
            cues.append(Cue(group[0].start, group[-1].end, " ".join(w.word for w in group)))
            group = []
        group.append(word)
    cues.append(Cue(group[0].start, group[-1].end, " ".join(w.word for w in group)))
    return cues


def _clock(seconds: float, separator: str) -> str:
    """HH:MM:SS<sep>mmm, rounded to the millisecond."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_txt(transcript: Transcript) -> str:
    return transcript.text + "\n"


def to_json(transcript: Transcript) -> str:
    data = {
        "text": transcript.text,
        "duration": round(transcript.duration, 3),
        "words": [
            {
                "word": w.word,
                "start": round(w.start, 3),
                "end": round(w.end, 3),
                "confidence": round(w.confidence, 4),
            }
            for w in transcript.words
        ],
        "score": round(transcript.score, 4),
    }
    if transcript.alternatives:
        data["alternatives"] = [
            {"text": text, "score": round(score, 4)} for text, score in transcript.alternatives
        ]
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def to_srt(transcript: Transcript) -> str:
    blocks = [
        f"{i}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n{c.text}\n"
        for i, c in enumerate(make_cues(transcript), 1)
    ]
    return "\n".join(blocks)


def to_vtt(transcript: Transcript) -> str:
    blocks = [
        f"{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n{c.text}\n"
        for c in make_cues(transcript)
    ]
    return "\n".join(["WEBVTT\n", *blocks])


def to_tsv(transcript: Transcript) -> str:
    rows = ["start\tend\ttext"]
    for cue in make_cues(transcript):
        rows.append(f"{round(cue.start * 1000)}\t{round(cue.end * 1000)}\t{cue.text}")
    return "\n".join(rows) + "\n"


WRITERS = {"txt": to_txt, "json": to_json, "srt": to_srt, "vtt": to_vtt, "tsv": to_tsv}


def parse_formats(spec: str) -> list[str]:
    """``"all"``, one format, or a comma-separated list -> formats (ValueError if unknown)."""
    names = list(FORMATS) if spec == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in WRITERS]
    if unknown or not names:
        raise ValueError(f"unknown output format {spec!r}: use {'|'.join(FORMATS)}|all")
    return names


def write_transcript(
    transcript: Transcript, output_dir: str | Path, name: str, formats: Iterable[str]
) -> list[Path]:
    """Write ``output_dir/name.<format>`` for each format; returns the paths written."""
    written = []
    for fmt in formats:
        path = Path(output_dir) / f"{name}.{fmt}"
        atomic_write_text(path, WRITERS[fmt](transcript))
        written.append(path)
    return written


def output_names(paths: Sequence[str | Path], roots: Sequence[str | Path | None]) -> list[str]:
    """Output names without extension: the path below its input folder, or the file's stem.

    ``roots[i]`` is the folder argument ``paths[i]`` was found in (None for a file given
    directly). Raises ValueError when two inputs would write the same files.
    """
    names = []
    for path, root in zip(paths, roots, strict=True):
        path = Path(path)
        relative = path.relative_to(root) if root is not None else Path(path.name)
        names.append(str(relative.with_suffix("")))
    seen: dict[str, str] = {}
    for path, name in zip(paths, names, strict=True):
        if name in seen:
            raise ValueError(f"{seen[name]} and {path} would write the same output files ({name})")
        seen[name] = str(path)
    return names
