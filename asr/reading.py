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
    _render,
    _render_all,
    default_cache_dir,
    write_clip,
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
    sample_rate: int = SAMPLE_RATE  # of the written file


_flite = Flite()


def _flite_job(
    path: str, text: str, voice: str, rng: random.Random, sample_rate: int = SAMPLE_RATE
) -> _FliteJob:
    """A Flite utterance with its stretch, pitch, warp and level drawn from ``rng``."""
    return _FliteJob(
        path=path,
        text=text,
        voice=voice,
        stretch=round(rng.uniform(*STRETCH), 3),
        f0_mean=round(VOICES[voice] * rng.uniform(*F0_SCALE), 1),
        warp=round(rng.uniform(*WARP), 3),
        peak=round(rng.uniform(*PEAK), 3),
        sample_rate=sample_rate,
    )


def _render_flite(job: _FliteJob) -> dict:
    result = _flite.synthesize(job.text, job.voice, job.stretch, job.f0_mean)
    # Played w times faster: pitch and formants rise by w, duration falls by w. The
    # samples resampled to rate / w are then read as if still at the voice's rate.
    warped = resample(torch.from_numpy(result.audio), result.sample_rate,
                      int(round(result.sample_rate / job.warp))).numpy()  # fmt: skip
    duration = write_clip(job.path, warped, result.sample_rate, job.sample_rate, job.peak)
    return {
        "audio_filepath": job.path,
        "duration": duration,
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
    folder = out.resolve() / "audio"
    jobs = [
        _flite_job(str(folder / f"flite-{i:06d}.flac"), text, voices[i % len(voices)], rng)
        for i, text in enumerate(texts)
    ]
    started = time.monotonic()
    write_manifest(manifest, _render_all(jobs, workers, _render_flite))
    info = {**params, "seconds_to_build": round(time.monotonic() - started, 1)}
    atomic_write_text(out / "corpus.json", json.dumps(info, indent=2) + "\n")
    return manifest


# --- isolated digits -----------------------------------------------------------------------
DIGITS_VERSION = 1
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DIGIT_RATES = (8000, 16000)  # half at FSDD's (and telephones') 8 kHz, half at 16 kHz


def default_digits_dir(n: int, seed: int = 0) -> Path:
    return default_cache_dir() / f"digits-v{DIGITS_VERSION}-seed{seed}-n{n}"


def build_digit_corpus(
    n: int, out_dir: str | Path | None = None, seed: int = 0, workers: int = 2
) -> Path:
    """``n`` isolated digit words ("zero" ... "nine", as FSDD writes them), spoken in turn
    by an espeak-ng voice and a Flite voice, each digit equally often by each engine.

    Many more speakers for the digits than a small real digit corpus has. Returns the path
    of ``train.jsonl``. Needs the ``flite`` program.
    """
    flite_program()
    out = Path(out_dir) if out_dir is not None else default_digits_dir(n, seed)
    params = {"version": DIGITS_VERSION, "seed": seed, "n": n}
    manifest = out / "train.jsonl"
    if _is_complete(out, params, {"train": manifest}):
        return manifest
    (out / "corpus.json").unlink(missing_ok=True)
    rng = random.Random(f"digits-{seed}")
    espeak_voices = [f"{lg}+{v}" for lg in LANGUAGES for v in VARIANTS]
    rng.shuffle(espeak_voices)
    flite_voices = sorted(VOICES)
    jobs: list[_Job | _FliteJob] = []
    for i in range(n):
        path = str(out.resolve() / "audio" / f"digit-{i:06d}.flac")
        # Each voice says the ten digits in a row: turn k is digit k % 10 of voice k // 10.
        turn = i // 2
        text, speaker = DIGITS[turn % len(DIGITS)], turn // len(DIGITS)
        rate = rng.choice(DIGIT_RATES)
        if i % 2:
            voice = flite_voices[speaker % len(flite_voices)]
            jobs.append(_flite_job(path, text, voice, rng, rate))
            continue
        jobs.append(
            _Job(
                split="digits", path=path, text=text,
                voice=espeak_voices[speaker % len(espeak_voices)], rate=rng.randint(*RATE_WPM),
                pitch=rng.randint(*PITCH), pitch_range=rng.randint(*PITCH_RANGE),
                peak=round(rng.uniform(*PEAK), 3), strict_words=False, sample_rate=rate,
            )
        )  # fmt: skip
    started = time.monotonic()
    write_manifest(manifest, _render_all(jobs, workers, _render_any))
    info = {**params, "seconds_to_build": round(time.monotonic() - started, 1)}
    atomic_write_text(out / "corpus.json", json.dumps(info, indent=2) + "\n")
    return manifest


def _render_any(job: _Job | _FliteJob) -> dict:
    return _render_flite(job) if isinstance(job, _FliteJob) else _render(job)
