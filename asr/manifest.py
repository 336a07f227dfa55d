"""NeMo-style JSONL manifests: one utterance a line.

Each line is a JSON object with at least::

    {"audio_filepath": "audio/0001.flac", "duration": 3.29, "text": "hello world"}

``audio_filepath`` is relative to the manifest's own folder (absolute paths are accepted);
``duration`` is in seconds; any extra keys (``speaker``, ``prompt``...) are kept in
:attr:`Utterance.extra` and written back unchanged. Two extra keys have a meaning: with
``audio_offset`` and ``audio_size`` the audio is that byte range of ``audio_filepath`` (a
member of a tar shard, see :mod:`asr.shards`).

:func:`read_manifest` returns a list; :class:`ManifestIndex` reads manifests of millions of
lines lazily, holding only each line's position and duration (about 26 bytes a line).
"""

from __future__ import annotations

import json
import math
import os
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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

    @property
    def byte_range(self) -> tuple[int, int] | None:
        """(offset, size) of the audio inside ``audio_filepath``, or None for a whole file."""
        if "audio_offset" not in self.extra:
            return None
        return int(self.extra["audio_offset"]), int(self.extra["audio_size"])


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
    if "audio_offset" in extra or "audio_size" in extra:
        for key in ("audio_offset", "audio_size"):
            value = extra.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ManifestError(
                    f"{where}: '{key}' must be a byte count >= 0 (with its pair), got {value!r}"
                )
    return Utterance(str(path), float(duration), text, extra, where)


def _parsed_lines(path: Path, check_files: bool) -> Iterator[tuple[int, int, Utterance]]:
    """(byte offset, line number, utterance) of each non-blank line of ``path``, checked;
    ManifestError for a missing or empty manifest or the first bad line."""
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    folder = path.resolve().parent
    offset, found = 0, False
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                found = True
                yield offset, number, _parse_line(raw, f"{path}:{number}", folder, check_files)
            offset += len(raw)
    if not found:
        raise ManifestError(f"{path}: manifest has no utterances")


def read_manifest(path: str | Path, check_files: bool = True) -> list[Utterance]:
    """Read and validate a JSONL manifest.

    Blank lines are ignored. The first bad line raises :class:`ManifestError` with
    ``file:line`` and the problem. With ``check_files`` every audio path must exist.
    """
    return [utt for _, _, utt in _parsed_lines(Path(path).expanduser(), check_files)]


def read_manifests(paths: Iterable[str | Path], check_files: bool = True) -> list[Utterance]:
    """Concatenate several manifests."""
    utterances: list[Utterance] = []
    for path in paths:
        utterances.extend(read_manifest(path, check_files))
    return utterances


def subset(utterances: Sequence[Utterance], indices: Sequence[int]) -> Sequence[Utterance]:
    """The utterances at ``indices``: a list from a list, a :class:`ManifestIndex` from one."""
    if isinstance(utterances, ManifestIndex):
        return utterances.select(indices)
    return [utterances[i] for i in indices]


def durations_of(utterances: Sequence[Utterance]) -> list[float]:
    """Every utterance's duration, without parsing a :class:`ManifestIndex`'s lines."""
    if isinstance(utterances, ManifestIndex):
        return utterances.durations.tolist()
    return [u.duration for u in utterances]


class ManifestIndex(Sequence[Utterance]):
    """Manifests read lazily: a sequence of :class:`Utterance` parsed from disk on access.

    Opening validates every line as :func:`read_manifest` does (same errors), but keeps only
    numpy columns: which file, byte offset, line number and duration ([N] each, about 26
    bytes a line against ~850 for an :class:`Utterance`). Python objects for a million lines
    would also be copied into every forked data-loader worker as their reference counts
    change; arrays are not. ``index[i]`` re-reads line ``i`` (one seek and one JSON parse,
    ~13 us); :meth:`select` makes a subset sharing the files.
    """

    def __init__(self, paths: Iterable[str | Path], check_files: bool = True):
        self.files: list[Path] = []
        self.folders: list[Path] = []  # resolved once: relative audio paths start there
        self._stamps: list[tuple[int, int, int]] = []  # a replaced file must not be misread
        # array.array while scanning: a list of a million tuples would cost ~150 MB
        file_of, offsets, lines, durations = (array(code) for code in "iqid")
        for path in paths:
            path = Path(path).expanduser()
            for offset, number, utt in _parsed_lines(path, check_files):
                file_of.append(len(self.files))
                offsets.append(offset)
                lines.append(number)
                durations.append(utt.duration)
            self.files.append(path)
            self.folders.append(path.resolve().parent)
            self._stamps.append(_stamp(path))
        self.file_of = np.frombuffer(file_of, dtype=np.int32).copy()
        self.offsets = np.frombuffer(offsets, dtype=np.int64).copy()
        self.lines = np.frombuffer(lines, dtype=np.int32).copy()
        self.durations = np.frombuffer(durations, dtype=np.float64).copy()
        self._handles: dict[int, object] = {}
        self._pid = os.getpid()

    @classmethod
    def _from_columns(cls, parent: ManifestIndex, rows: np.ndarray) -> ManifestIndex:
        new = cls.__new__(cls)
        new.files, new.folders, new._stamps = parent.files, parent.folders, parent._stamps
        new.file_of = parent.file_of[rows]
        new.offsets = parent.offsets[rows]
        new.lines = parent.lines[rows]
        new.durations = parent.durations[rows]
        new._handles, new._pid = {}, os.getpid()
        return new

    def select(self, indices: Sequence[int] | np.ndarray) -> ManifestIndex:
        """The utterances at ``indices`` (integers, not a mask), in that order."""
        rows = np.asarray(indices)
        if rows.dtype == bool:
            raise TypeError("ManifestIndex.select takes indices, not a boolean mask")
        return self._from_columns(self, rows.astype(np.int64))

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, index):  # int -> Utterance; slice -> ManifestIndex
        if isinstance(index, slice):
            return self.select(np.arange(len(self))[index])
        asked = index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"utterance {asked} of {len(self)}")
        number = int(self.file_of[index])
        handle = self._handle(number)
        handle.seek(int(self.offsets[index]))
        path = self.files[number]
        where = f"{path}:{int(self.lines[index])}"
        # the line was validated when the index was built, and the file is unchanged
        return _parse_line(handle.readline(), where, self.folders[number], check_files=False)

    def _handle(self, number: int):
        if self._pid != os.getpid():  # a forked worker: never share the parent's file offset
            self._handles, self._pid = {}, os.getpid()
        if number not in self._handles:
            path = self.files[number]
            if _stamp(path) != self._stamps[number]:  # offsets into another file's lines
                raise ManifestError(f"{path}: manifest changed since it was indexed")
            self._handles[number] = open(path, "rb")  # noqa: SIM115
        return self._handles[number]

    def __getstate__(self) -> dict:  # spawned workers: open their own files
        return {**self.__dict__, "_handles": {}}


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino


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
