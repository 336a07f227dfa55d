"""NeMo-style JSONL manifests: one utterance a line.

Each line is a JSON object with at least::

    {"audio_filepath": "audio/0001.flac", "duration": 3.29, "text": "hello world"}

``audio_filepath`` is relative to the manifest's own folder (absolute paths are accepted);
``duration`` is in seconds; any extra keys (``speaker``, ``prompt``...) are kept in
:attr:`Utterance.extra` and written back unchanged.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from asr.io_utils import atomic_write

REQUIRED_KEYS = ("audio_filepath", "duration", "text")


class ManifestError(ValueError):
    """A manifest line that cannot be used; the message names the file and line."""


@dataclass(slots=True)  # a million of them: no per-object __dict__
class Utterance:
    """One manifest entry, with its audio path already resolved against the manifest folder."""

    audio_filepath: str
    duration: float
    text: str
    extra: dict = field(default_factory=dict)
    #: where it came from, for error messages: "train.jsonl:12"
    origin: str = ""

    @property
    def speaker(self) -> str | None:
        value = self.extra.get("speaker")
        return None if value is None else str(value)


def _parse_line(raw: bytes, where: str, folder: Path, check_files: bool) -> Utterance:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"{where}: not valid UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{where}: bad JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in obj]
    if missing:
        raise ManifestError(f"{where}: missing key(s) {', '.join(missing)}")
    audio, duration, text = obj["audio_filepath"], obj["duration"], obj["text"]
    if not isinstance(audio, str) or not audio:
        raise ManifestError(f"{where}: 'audio_filepath' must be a non-empty string")
    if isinstance(duration, bool) or not isinstance(duration, (int, float)):
        raise ManifestError(f"{where}: 'duration' must be a number, got {duration!r}")
    if not math.isfinite(duration) or duration <= 0:
        raise ManifestError(f"{where}: 'duration' must be a positive number, got {duration!r}")
    if not isinstance(text, str):
        raise ManifestError(f"{where}: 'text' must be a string, got {type(text).__name__}")
    path = Path(audio) if os.path.isabs(audio) else folder / audio
    if check_files:
        if not path.exists():
            raise ManifestError(f"{where}: audio file not found: {path}")
        if path.is_dir():
            raise ManifestError(f"{where}: audio path is a directory: {path}")
        if not os.access(path, os.R_OK):
            raise ManifestError(f"{where}: audio file is not readable: {path}")
    extra = {k: v for k, v in obj.items() if k not in REQUIRED_KEYS}
    return Utterance(str(path), float(duration), text, extra, where)


def read_manifest(path: str | Path, check_files: bool = True) -> list[Utterance]:
    """Read and validate a JSONL manifest.

    Blank lines are ignored. The first bad line raises :class:`ManifestError` with
    ``file:line`` and the problem. With ``check_files`` every audio path must exist.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    folder = path.resolve().parent
    utterances = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            utterances.append(_parse_line(raw, f"{path}:{number}", folder, check_files))
    if not utterances:
        raise ManifestError(f"{path}: manifest has no utterances")
    return utterances


def read_manifests(paths: Iterable[str | Path], check_files: bool = True) -> list[Utterance]:
    """Concatenate several manifests."""
    utterances: list[Utterance] = []
    for path in paths:
        utterances.extend(read_manifest(path, check_files))
    return utterances


def write_manifest(path: str | Path, entries: Iterable[dict | Utterance]) -> int:
    """Write entries as JSONL atomically; audio paths are made relative to the manifest folder.

    ``entries`` are dicts with at least the required keys, or :class:`Utterance` objects.
    Returns the number of lines written.
    """
    path = Path(path)
    folder = path.resolve().parent
    count = 0
    with atomic_write(path, "w") as handle:
        for entry in entries:
            if isinstance(entry, Utterance):
                row = {
                    "audio_filepath": entry.audio_filepath,
                    "duration": entry.duration,
                    "text": entry.text,
                    **entry.extra,
                }
            else:
                row = dict(entry)
            audio = Path(row["audio_filepath"])
            if audio.is_absolute():
                try:
                    row["audio_filepath"] = os.path.relpath(audio, folder)
                except ValueError:  # another drive on Windows: keep it absolute
                    row["audio_filepath"] = str(audio)
            row["duration"] = round(float(row["duration"]), 4)
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count
