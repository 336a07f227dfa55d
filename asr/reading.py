"""Synthetic training speech: random lines of a text corpus read aloud by many voices.

Two engines, each with its own cached corpus folder and ``train.jsonl``:

- ``espeak``: the 192 espeak-ng demo voices (8 accents x 24 variants) at random rates,
  pitches and levels (:func:`build_reading_corpus`);
- ``flite``: Flite's four US-English voices built from real recordings, each stretched,
  re-pitched and warped per utterance into many "speakers" (:func:`build_flite_corpus`).
  Warping resamples the audio by a factor ``w`` in :data:`WARP`, scaling pitch *and*
  formants by ``w``, as a shorter or longer vocal tract would.

Nothing is held out: real dev sets judge this data. Folders are reused when complete
(``corpus.json`` written last, with the parameters), regenerated otherwise.
"""

from __future__ import annotations

import gzip
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from asr.audio import resample
from asr.demo import (
    LANGUAGES,
    PEAK,
    PITCH,
    PITCH_RANGE,
    RATE_WPM,
    SAMPLE_RATE,
    VARIANTS,
    _is_complete,
    _Job,
    _render_all,
    default_cache_dir,
)
from asr.flite import STRETCH, VOICES, Flite, flite_program
from asr.io_utils import atomic_write_text
from asr.manifest import write_manifest

READ_VERSION = 1
FLITE_VERSION = 1
F0_SCALE = (0.8, 1.25)  # mean pitch: the voice's own times this
WARP = (0.88, 1.12)  # vocal-tract warp: pitch and formants times this


def read_sentences(
    text_file: str | Path,
    n: int,
    seed: int,
    min_words: int = 3,
    max_words: int = 20,
    stream: str = "read",
) -> list[str]:
    """``n`` distinct random lines of ``text_file`` (gzip or plain) with a usable length.

    ``stream`` names the random draw: corpora with different streams read different
    sentences from the same file.
    """
    opener = gzip.open if str(text_file).endswith(".gz") else open
    with opener(text_file, "rt", encoding="utf-8") as handle:
        lines = [line.strip() for line in handle]
    pool = sorted({line for line in lines if min_words <= len(line.split()) <= max_words})
    if len(pool) < n:
        raise ValueError(
            f"{text_file}: only {len(pool)} lines of {min_words}-{max_words} words, {n} asked"
        )
    return random.Random(f"{stream}-{seed}").sample(pool, n)


def default_reading_dir(n: int, seed: int = 0, engine: str = "espeak") -> Path:
    """Where a reading corpus of ``n`` sentences goes when no folder is given."""
    if engine == "flite":
        return default_cache_dir() / f"read-flite-v{FLITE_VERSION}-seed{seed}-n{n}"
    return default_cache_dir() / f"read-v{READ_VERSION}-seed{seed}-n{n}"


def build_reading_corpus(
    text_file: str | Path,
    n: int,
    out_dir: str | Path | None = None,
    seed: int = 0,
    workers: int = 2,
) -> Path:
    """``n`` sentences of ``text_file`` read by every espeak-ng demo voice in turn.

    Returns the path of ``train.jsonl``.
    """
    out = Path(out_dir) if out_dir is not None else default_reading_dir(n, seed)
    params = {"version": READ_VERSION, "seed": seed, "n": n, "text_file": Path(text_file).name}
    manifest = out / "train.jsonl"
    if _is_complete(out, params, {"train": manifest}):
        return manifest
    (out / "corpus.json").unlink(missing_ok=True)
    rng = random.Random(seed)
    voices = [f"{lg}+{v}" for lg in LANGUAGES for v in VARIANTS]
    rng.shuffle(voices)
    jobs = [
        _Job(
            split="read", path=str(out.resolve() / "audio" / f"read-{i:06d}.flac"), text=text,
            voice=voices[i % len(voices)], rate=rng.randint(*RATE_WPM), pitch=rng.randint(*PITCH),
            pitch_range=rng.randint(*PITCH_RANGE), peak=round(rng.uniform(*PEAK), 3),
            strict_words=False,
        )
        for i, text in enumerate(read_sentences(text_file, n, seed))
    ]  # fmt: skip
    started = time.monotonic()
    write_manifest(manifest, _render_all(jobs, workers))
    info = {**params, "seconds_to_build": round(time.monotonic() - started, 1)}
    atomic_write_text(out / "corpus.json", json.dumps(info, indent=2) + "\n")
    return manifest


@dataclass(frozen=True)
class _FliteJob:
    """One Flite utterance, every random choice drawn in the parent."""

    path: str
    text: str
    voice: str
    stretch: float
    f0_mean: float
    warp: float
    peak: float


_flite = Flite()


def _render_flite(job: _FliteJob) -> dict:
    result = _flite.synthesize(job.text, job.voice, job.stretch, job.f0_mean)
    wave = torch.from_numpy(result.audio)
    # Played w times faster: pitch and formants rise by w, duration falls by w.
    warped_rate = int(round(result.sample_rate / job.warp))
    wave = resample(wave, result.sample_rate, warped_rate)
    wave = resample(wave, result.sample_rate, SAMPLE_RATE).numpy()
    wave = wave * (job.peak / max(float(np.abs(wave).max()), 1e-6))
    Path(job.path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(job.path, wave, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    return {
        "audio_filepath": job.path,
        "duration": len(wave) / SAMPLE_RATE,
        "text": job.text,
        "speaker": f"flite-{job.voice}",
    }


def build_flite_corpus(
    text_file: str | Path,
    n: int,
    out_dir: str | Path | None = None,
    seed: int = 0,
    workers: int = 2,
) -> Path:
    """``n`` sentences of ``text_file`` (others than the espeak corpus reads) spoken by the
    Flite voices in turn, each utterance with its own stretch, pitch, warp and level.

    Returns the path of ``train.jsonl``. Needs the ``flite`` program.
    """
    flite_program()  # fail before planning, with the package to install
    out = Path(out_dir) if out_dir is not None else default_reading_dir(n, seed, "flite")
    params = {"version": FLITE_VERSION, "seed": seed, "n": n, "text_file": Path(text_file).name}
    manifest = out / "train.jsonl"
    if _is_complete(out, params, {"train": manifest}):
        return manifest
    (out / "corpus.json").unlink(missing_ok=True)
    rng = random.Random(f"flite-{seed}")
    voices = sorted(VOICES)
    texts = read_sentences(text_file, n, seed, stream="flite")
    jobs = [
        _FliteJob(
            path=str(out.resolve() / "audio" / f"flite-{i:06d}.flac"),
            text=text,
            voice=voices[i % len(voices)],
            stretch=round(rng.uniform(*STRETCH), 3),
            f0_mean=round(VOICES[voices[i % len(voices)]] * rng.uniform(*F0_SCALE), 1),
            warp=round(rng.uniform(*WARP), 3),
            peak=round(rng.uniform(*PEAK), 3),
        )
        for i, text in enumerate(texts)
    ]
    started = time.monotonic()
    write_manifest(manifest, _render_all(jobs, workers, _render_flite))
    info = {**params, "seconds_to_build": round(time.monotonic() - started, 1)}
    atomic_write_text(out / "corpus.json", json.dumps(info, indent=2) + "\n")
    return manifest
