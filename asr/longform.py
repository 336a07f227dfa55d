"""Long recordings in bounded memory: stream the audio, cut it at silences, stitch the words.

A file of any length is read a block at a time (:func:`stream_audio`), resampled on the fly,
and cut into chunks of at most ``chunk_seconds`` (:func:`split_stream`). Each cut goes at
the quietest point of the chunk's second half when that point is a pause (energy VAD);
when the stretch has no pause (music, babble, one very long sentence) the chunk is cut at
full length and the next one starts ``overlap_seconds`` earlier, and the words of the
shared stretch are split at its middle (:func:`keep_words`). Memory holds one block, one
chunk batch and the words so far, whatever the length of the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from asr.audio import AudioError, RawFormat, _existing_file, _short, finite_mono, open_sound
from asr.decoding import Word

# Energy VAD frames: 25 ms windows every 10 ms, smoothed over 0.2 s so that a cut lands in
# a pause, not in the closure of a stop consonant.
VAD_WINDOW_S = 0.025
VAD_HOP_S = 0.010
VAD_SMOOTH_FRAMES = 20  # 0.2 s / VAD_HOP_S
# A pause is a dip this far under the chunk's speech level (its 90th energy percentile).
# Relative only: an absolute floor would find "pauses" anywhere in a quiet recording.
PAUSE_DEPTH_DB = 25.0
# Audio past a chunk's end that the energy of its last frames needs (window + smoothing)
VAD_CONTEXT_S = VAD_WINDOW_S + VAD_SMOOTH_FRAMES * VAD_HOP_S
# Shorter overlaps let one word span the whole shared stretch, and be kept twice
MIN_OVERLAP_S = 1.0


@dataclass(frozen=True)
class ChunkSpec:
    """How long files are cut. Chunks hold at most ``chunk_seconds`` of audio."""

    chunk_seconds: float = 30.0
    overlap_seconds: float = 2.0  # shared audio between chunks cut without a pause
    block_seconds: float = 60.0  # audio decoded from the file at a time

    def __post_init__(self) -> None:
        if not self.chunk_seconds >= 4 * MIN_OVERLAP_S:
            raise ValueError(
                f"chunk_seconds must be >= {4 * MIN_OVERLAP_S:g}, got {self.chunk_seconds}"
            )
        if not MIN_OVERLAP_S <= self.overlap_seconds <= self.chunk_seconds / 4:
            raise ValueError(
                f"overlap_seconds must be in [{MIN_OVERLAP_S:g}, chunk_seconds / 4], "
                f"got {self.overlap_seconds}"
            )
        if not self.block_seconds > 0:
            raise ValueError(f"block_seconds must be positive, got {self.block_seconds}")


@dataclass
class Chunk:
    """``wave`` [N] starts ``start`` seconds into the file; only words whose centre lies in
    [keep_from, keep_until) are its own (the rest belong to an overlapping neighbour)."""

    start: float
    wave: np.ndarray
    keep_from: float = float("-inf")
    keep_until: float = float("inf")


def stream_audio(
    path: str | Path,
    sample_rate: int,
    block_seconds: float = 60.0,
    raw: RawFormat | None = None,
) -> Iterator[np.ndarray]:
    """Mono float32 blocks of ``path`` at ``sample_rate``, about ``block_seconds`` each.

    The streaming twin of :func:`asr.audio.load_audio`, with the same checks: AudioError
    naming the file for a missing, corrupt, empty or non-finite file (a fault found midway
    is raised when reached).
    """
    path = _existing_file(path)
    with open_sound(str(path), str(path), raw) as handle:
        rate = handle.samplerate
        step = max(1, int(block_seconds * rate))
        stream = None if rate == sample_rate else soxr.ResampleStream(rate, sample_rate, 1)
        total = 0
        while True:
            try:
                data = handle.read(step, dtype="float32", always_2d=True)
            except Exception as exc:
                raise AudioError(f"{path}: cannot decode audio ({_short(exc)})") from None
            last = data.shape[0] < step
            total += data.shape[0]
            mono = finite_mono(data, path)
            if stream is not None:
                mono = stream.resample_chunk(mono, last=last)
            if mono.size:
                yield mono
            if last:
                break
        if total == 0:
            raise AudioError(f"{path}: contains no audio samples")


def frame_energy_db(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Smoothed frame energy in dB (full scale = 0) of ``wave`` [N] -> [N // hop]."""
    hop = int(VAD_HOP_S * sample_rate)
    win = int(VAD_WINDOW_S * sample_rate)
    n = len(wave) // hop
    if n == 0:
        return np.zeros(0, np.float32)
    padded = np.concatenate([wave, np.zeros(win, np.float32)])
    # mean square per window from a cumulative sum: O(N), no frame matrix to hold
    cumsum = np.concatenate([[0.0], np.cumsum(padded.astype(np.float64) ** 2)])
    starts = np.arange(n) * hop
    power = (cumsum[starts + win] - cumsum[starts]) / win
    kernel = np.ones(VAD_SMOOTH_FRAMES) / VAD_SMOOTH_FRAMES
    power = np.convolve(power, kernel, mode="same")
    return (10 * np.log10(power + 1e-10)).astype(np.float32)


def find_pause(wave: np.ndarray, sample_rate: int, lo: int, hi: int) -> int | None:
    """Sample index of the quietest point of ``wave[lo:hi]`` if it is a pause, else None.

    ``wave`` may run past ``hi`` (up to :data:`VAD_CONTEXT_S`): the energy of the last
    frames then sees real audio, not zero padding that would fake a dip.
    """
    energy = frame_energy_db(wave, sample_rate)
    hop = int(VAD_HOP_S * sample_rate)
    complete = len(energy) - VAD_SMOOTH_FRAMES // 2 - int(VAD_WINDOW_S / VAD_HOP_S)
    first, last = lo // hop, min(hi // hop, complete)
    if last <= first:
        return None
    window = energy[first:last]
    quietest = int(np.argmin(window))
    speech_level = float(np.percentile(energy[: hi // hop], 90))
    if window[quietest] > speech_level - PAUSE_DEPTH_DB:
        return None
    return (first + quietest) * hop + int(VAD_WINDOW_S * sample_rate) // 2


def split_stream(
    blocks: Iterator[np.ndarray], sample_rate: int, spec: ChunkSpec = ChunkSpec()
) -> Iterator[Chunk]:
    """Cut a stream of audio blocks into :class:`Chunk` s of at most ``spec.chunk_seconds``.

    A cut goes at a pause in the second half of the chunk when there is one, else at full
    length with ``spec.overlap_seconds`` shared with the next chunk, whose words are then
    divided at the middle of the shared stretch.
    """
    size = int(spec.chunk_seconds * sample_rate)
    overlap = int(spec.overlap_seconds * sample_rate)
    context = int(VAD_CONTEXT_S * sample_rate)
    buffer = np.zeros(0, np.float32)
    offset = 0  # file position (samples) of buffer[0]
    keep_from = float("-inf")
    for block in blocks:
        buffer = np.concatenate([buffer, block])
        while len(buffer) > size:
            cut = find_pause(buffer[: size + context], sample_rate, size // 2, size)
            if cut is not None:
                yield Chunk(offset / sample_rate, buffer[:cut].copy(), keep_from)
                keep_from = float("-inf")
                buffer, offset = buffer[cut:], offset + cut
            else:
                middle = (offset + size - overlap / 2) / sample_rate
                yield Chunk(offset / sample_rate, buffer[:size].copy(), keep_from, middle)
                keep_from = middle
                buffer, offset = buffer[size - overlap :], offset + size - overlap
    if len(buffer):  # after an overlapped cut, even a short tail owns half the overlap
        yield Chunk(offset / sample_rate, buffer.copy(), keep_from)


def keep_words(words: list[Word], chunk: Chunk) -> list[Word]:
    """``words`` of a chunk (times relative to it) moved to file time, keeping only those
    whose centre falls in the chunk's own stretch."""
    kept = []
    for word in words:
        start, end = word.start + chunk.start, word.end + chunk.start
        if chunk.keep_from <= (start + end) / 2 < chunk.keep_until:
            kept.append(Word(word.word, start, end, word.confidence))
    return kept
