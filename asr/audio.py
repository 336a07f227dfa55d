"""Reading audio: any format soundfile reads, any channel count, any rate -> mono float32.

``load_audio(path, 16000)`` returns a 1-D float32 tensor in [-1, 1] at the requested rate.
Decoding goes through libsndfile (wav, flac, ogg/vorbis, opus, mp3 with libsndfile >= 1.1);
headerless PCM is read when the caller gives its layout (:class:`RawFormat`). A
``byte_range`` (offset, size) reads an audio file stored inside another, such as a member of
a tar shard (:mod:`asr.shards`), with one seek and one read.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

SAMPLE_RATE = 16000  # the model's default input rate (Hz)
# What a folder of audio is searched for (asr-transcribe DIR, asr-prepare folder)
AUDIO_SUFFIXES = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64"}
)


class AudioError(ValueError):
    """Audio that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class RawFormat:
    """Layout of a headerless PCM file (``.raw``/``.pcm``), which carries no header to read."""

    sample_rate: int
    channels: int = 1
    subtype: str = "PCM_16"
    endian: str = "FILE"


def _existing_file(path: str | Path) -> Path:
    """``path`` as a Path; AudioError if it is missing or a directory."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    return path


def _open(path: Path, byte_range: tuple[int, int] | None) -> tuple[str | io.BytesIO, str]:
    """What soundfile reads (the path, or the bytes of its range) and the name for errors."""
    if byte_range is None:
        return str(path), str(path)
    offset, size = byte_range
    name = f"{path} (bytes {offset}..{offset + size})"
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(size)
    except OSError as exc:  # EIO on a network mount must not end a run: the batch skips it
        raise AudioError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if len(data) != size:
        raise AudioError(f"{name}: file ends after {len(data)} of {size} bytes")
    return io.BytesIO(data), name


def audio_info(path: str | Path) -> tuple[float, int]:
    """(duration in seconds, native sample rate) read from the header, without decoding."""
    path = _existing_file(path)
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types; all mean "unreadable"
        raise AudioError(f"{path}: cannot read audio header ({_short(exc)})") from None
    return info.frames / info.samplerate, info.samplerate


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def soundfile_kwargs(raw: RawFormat | None) -> dict:
    """What soundfile needs to open ``raw`` headerless PCM (nothing for other files)."""
    if raw is None:
        return {}
    return dict(
        samplerate=raw.sample_rate,
        channels=raw.channels,
        subtype=raw.subtype,
        endian=raw.endian,
        format="RAW",
    )


def open_sound(source: str | io.BytesIO, name: str, raw: RawFormat | None) -> sf.SoundFile:
    """An open soundfile handle on ``source`` (its header read); AudioError naming ``name``."""
    try:
        return sf.SoundFile(source, **soundfile_kwargs(raw))
    except Exception as exc:  # soundfile raises several types; all mean "unreadable"
        raise AudioError(f"{name}: cannot decode audio ({_short(exc)})") from None


def finite_mono(data: np.ndarray, path: Path | str) -> np.ndarray:
    """Frames [N, C] read from ``path`` -> contiguous float32 mono [N]; AudioError if any
    sample is NaN or infinite."""
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32)


def resample(wave: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Resample a mono wave [N] (or channels-first [C, N]) between two rates.

    libsoxr's high-quality polyphase filter, on the CPU. Not torchaudio's resampler: its
    oneDNN convolution caches work per input shape, so a corpus of clips of many lengths
    grew a process by ~1.2 MB per distinct length (measured: 527 MB after 200 lengths,
    34 MB with soxr).
    """
    if orig_rate == new_rate:
        return wave
    data = wave.detach().cpu().numpy()
    out = soxr.resample(data.T, orig_rate, new_rate, quality="HQ").T
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


def load_audio(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    raw: RawFormat | None = None,
    byte_range: tuple[int, int] | None = None,
    expected_seconds: float | None = None,
) -> torch.Tensor:
    """Decode ``path`` (or its ``byte_range`` (offset, size)) to a mono float32 tensor [N]
    at ``sample_rate``.

    Channels are averaged; the rate is converted with libsoxr (:func:`resample`).
    Raises :class:`AudioError` (naming the file) for missing, empty, corrupt or
    non-finite audio. With ``expected_seconds`` (a manifest's duration), audio far longer
    than that is refused from its header, before decoding: batching and the duration limit
    trust the manifest, and a mislabelled hour-long file could exhaust memory.
    """
    source, name = _open(_existing_file(path), byte_range)
    with open_sound(source, name, raw) as handle:  # one open: header check, then decoding
        rate, seconds = handle.samplerate, handle.frames / handle.samplerate
        if expected_seconds is not None and seconds > max(
            1.2 * expected_seconds, expected_seconds + 1.0
        ):
            raise AudioError(
                f"{name}: audio is {seconds:.1f} s but the manifest says {expected_seconds:.1f} s"
            )
        try:
            data = handle.read(dtype="float32", always_2d=True)
        except Exception as exc:
            raise AudioError(f"{name}: cannot decode audio ({_short(exc)})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{name}: contains no audio samples")
    wave = torch.from_numpy(finite_mono(data, name))
    return resample(wave, rate, sample_rate)
