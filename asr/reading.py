"""Synthetic training speech: random lines of a text corpus read aloud by many voices.

Two engines, each with its own cached corpus folder and ``train.jsonl``:

- ``espeak``: the 192 espeak-ng demo voices (8 accents x 24 variants) at random rates,
  pitches and levels;
- ``flite``: Flite's four US-English voices built from real recordings, each stretched,
  re-pitched and warped per utterance into many "speakers".

:func:`build_reading_corpus` makes either.
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
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

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
    SynthJob,
    corpus_complete,
    default_cache_dir,
    render_all,
    render_espeak,
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


def default_digits_dir(n: int, seed: int = 0) -> Path:
    """Where :func:`build_digit_corpus` puts ``n`` digits when no folder is given."""
    return default_cache_dir() / f"digits-v{DIGITS_VERSION}-seed{seed}-n{n}"


def _cached_corpus(
    out: Path,
    params: dict,
    plan: Callable[[Path], list],
    render: Callable[[Any], dict],
    workers: int,
    needs_flite: bool = False,
) -> Path:
    """``out/train.jsonl``: reused when ``out`` holds a finished corpus made with ``params``,
    else rendered from ``plan(audio folder)`` and marked finished by ``corpus.json``, last."""
    manifest = out / "train.jsonl"
    if corpus_complete(out, params, {"train": manifest}):
        return manifest
    if needs_flite:
        flite_program()  # fail before planning, naming the package to install
    (out / "corpus.json").unlink(missing_ok=True)
    jobs = plan(out.resolve() / "audio")
    started = time.monotonic()
    write_manifest(manifest, render_all(jobs, workers, render))
    info = {**params, "seconds_to_build": round(time.monotonic() - started, 1)}
    atomic_write_text(out / "corpus.json", json.dumps(info, indent=2) + "\n")
    return manifest


def _espeak_voices(rng: random.Random) -> list[str]:
    """The 192 demo voices (``language+variant``), shuffled by ``rng``."""
    voices = [f"{lg}+{v}" for lg in LANGUAGES for v in VARIANTS]
    rng.shuffle(voices)
    return voices


def _espeak_job(
    path: str, text: str, voice: str, rng: random.Random, split: str, sample_rate: int
) -> SynthJob:
    """An espeak-ng utterance with its rate, pitch, range and level drawn from ``rng``."""
    return SynthJob(
        split=split, path=path, text=text, voice=voice, rate=rng.randint(*RATE_WPM),
        pitch=rng.randint(*PITCH), pitch_range=rng.randint(*PITCH_RANGE),
        peak=round(rng.uniform(*PEAK), 3), strict_words=False, sample_rate=sample_rate,
    )  # fmt: skip


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
    """Speak ``job`` with Flite, warp it, write its file; returns its manifest entry."""
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


def _espeak_reading(text_file: str | Path, n: int, seed: int, audio: Path) -> list[SynthJob]:
    rng = random.Random(seed)
    voices = _espeak_voices(rng)
    return [
        _espeak_job(str(audio / f"read-{i:06d}.flac"), text, voices[i % len(voices)], rng,
                    "read", SAMPLE_RATE)
        for i, text in enumerate(read_sentences(text_file, n, seed))
    ]  # fmt: skip


def _flite_reading(text_file: str | Path, n: int, seed: int, audio: Path) -> list[_FliteJob]:
    # A different random draw of sentences from the espeak-ng corpus's.
    rng = random.Random(f"flite-{seed}")
    voices = sorted(VOICES)
    texts = read_sentences(text_file, n, seed, stream="flite")
    return [
        _flite_job(str(audio / f"flite-{i:06d}.flac"), text, voices[i % len(voices)], rng)
        for i, text in enumerate(texts)
    ]


def build_reading_corpus(
    text_file: str | Path,
    n: int,
    out_dir: str | Path | None = None,
    seed: int = 0,
    workers: int = 2,
    engine: str = "espeak",
) -> Path:
    """``n`` sentences of ``text_file`` read aloud; returns the path of ``train.jsonl``.

    ``engine="espeak"``: every espeak-ng demo voice in turn. ``engine="flite"``: the Flite
    voices in turn (another random draw of sentences), each utterance with its own
    stretch, pitch, warp and level; needs the ``flite`` program.
    """
    if engine not in ("espeak", "flite"):
        raise ValueError(f"engine must be 'espeak' or 'flite', got {engine!r}")
    flite = engine == "flite"
    out = Path(out_dir) if out_dir is not None else default_reading_dir(n, seed, engine)
    params = {"version": FLITE_VERSION if flite else READ_VERSION, "seed": seed, "n": n,
              "text_file": Path(text_file).name}  # fmt: skip
    plan = partial(_flite_reading if flite else _espeak_reading, text_file, n, seed)
    render = _render_flite if flite else render_espeak
    return _cached_corpus(out, params, plan, render, workers, needs_flite=flite)


# --- isolated digits -----------------------------------------------------------------------
DIGITS_VERSION = 1
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DIGIT_RATES = (8000, 16000)  # half at FSDD's (and telephones') 8 kHz, half at 16 kHz


def build_digit_corpus(
    n: int, out_dir: str | Path | None = None, seed: int = 0, workers: int = 2
) -> Path:
    """``n`` isolated digit words ("zero" ... "nine", as FSDD writes them), spoken in turn
    by an espeak-ng voice and a Flite voice. Each voice says the ten digits in a row, so
    with ``n`` a multiple of 20 each engine says each digit equally often.

    Many more speakers for the digits than a small real digit corpus has. Returns the path
    of ``train.jsonl``. Needs the ``flite`` program.
    """
    if n < 1:
        raise ValueError(f"the digit corpus needs at least one utterance, got {n}")
    out = Path(out_dir) if out_dir is not None else default_digits_dir(n, seed)
    params = {"version": DIGITS_VERSION, "seed": seed, "n": n}

    def plan(audio: Path) -> list[SynthJob | _FliteJob]:
        rng = random.Random(f"digits-{seed}")
        espeak_voices, flite_voices = _espeak_voices(rng), sorted(VOICES)
        jobs: list[SynthJob | _FliteJob] = []
        for i in range(n):
            path = str(audio / f"digit-{i:06d}.flac")
            turn = i // 2  # turn k: digit k % 10 of speaker k // 10, for each engine
            text, speaker = DIGITS[turn % len(DIGITS)], turn // len(DIGITS)
            rate = rng.choice(DIGIT_RATES)
            if i % 2:
                voice = flite_voices[speaker % len(flite_voices)]
                jobs.append(_flite_job(path, text, voice, rng, rate))
            else:
                voice = espeak_voices[speaker % len(espeak_voices)]
                jobs.append(_espeak_job(path, text, voice, rng, "digits", rate))
        return jobs

    return _cached_corpus(out, params, plan, _render_any, workers, needs_flite=True)


def _render_any(job: SynthJob | _FliteJob) -> dict:
    return _render_flite(job) if isinstance(job, _FliteJob) else render_espeak(job)
