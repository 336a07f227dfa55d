"""The synthetic demo corpus: short English sentences spoken by espeak-ng, made on the fly.

Sentences come from a small grammar over a 191-word vocabulary, so that a small
character-level BiLSTM-CTC model trained for minutes on a CPU can learn every word; the
words were picked so that spelling follows sound and no two of them sound alike (no "two"
with "to", no "hat" next to "at": the West Midlands accent drops its h).

Voices are espeak-ng ``language+variant`` pairs. The split is by voice: dev and test voices
never speak in train, but each of their languages and variants does, with another partner.
Texts, voices, rates, pitches and levels derive from ``seed`` alone, whatever the number of
workers; the audio itself varies in tiny details from run to run (espeak-ng carries some
state, such as its pitch flutter phase, from one utterance to the next).

``build_demo_corpus()`` writes 16 kHz FLAC files and ``train/dev/test.jsonl`` manifests
(with ``speaker`` and per-word ``words`` times), then ``corpus.json`` last: a folder without
that file, or with other parameters, is regenerated; a complete one is reused as is.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from asr.audio import resample
from asr.io_utils import atomic_write_text
from asr.manifest import write_manifest
from asr.synth import Espeak

log = logging.getLogger(__name__)

CORPUS_VERSION = 1
SAMPLE_RATE = 16000
DEFAULT_SIZES = {"n_train": 4000, "n_dev": 150, "n_test": 200}
SPLITS = ("train", "dev", "test")

# espeak-ng English accents; en-shaw is left out: it is "en" for Latin-script text.
LANGUAGES = [
    "en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-029",
    "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc",
]  # fmt: skip
# Variants that sound like a person: no whisper, croak, robot, echo-chamber or
# chipmunk ones, nor those with formants pushed far off (most community voices).
VARIANTS = [
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "Mike", "max", "paul", "robert", "quincy", "edward", "david", "adam",
    "linda", "belinda", "aunty",
]  # fmt: skip
N_HELDOUT_VOICES = {"dev": 8, "test": 12}
RATE_WPM = (120, 190)
PITCH = (30, 70)
PITCH_RANGE = (30, 80)
PEAK = (0.25, 0.9)  # loudness varies too: peak level drawn per utterance

# --- the grammar -------------------------------------------------------------------------
_W = str.split
SLOTS: dict[str, list[str]] = {
    "number": _W("one two three four five six seven eight nine ten eleven twelve"),
    "count": _W("two three four five six seven eight nine ten eleven twelve twenty"),
    "colour": _W("red blue green yellow black white brown orange purple grey"),
    "size": _W("big small old new tiny"),
    "adj": _W("big small old new heavy clean dirty broken empty"),
    "animal": _W("fox dog cat horse bird rabbit duck goat frog monkey"),
    "animals": _W("foxes dogs cats horses birds rabbits ducks goats frogs monkeys"),
    "object": _W("box cup book ball chair key lamp bag bottle basket clock"),
    "objects": _W("boxes cups books balls keys bags bottles baskets"),
    "furniture": _W("table chair bed shelf sofa"),
    "relative": _W("brother sister mother father friend teacher doctor"),
    "name": _W("anna peter sam lucy david maria tom emma"),
    "place": _W("kitchen garden park school market station river bridge"),
    "landmark": _W("bridge station school market church corner"),
    "moves": _W("jumps runs walks climbs"),
    "past": _W("found bought painted dropped carried washed"),
    "imp": _W("open close clean carry paint wash"),
    "give": _W("bring give show"),
    "wants": _W("wants needs likes"),
    "activity": _W("play sing dance work eat"),
    "daypart": _W("morning evening afternoon"),
    "when": _W("today tomorrow tonight now"),
    "weather": _W("sunny windy rainy cloudy"),
    "temperature": _W("warm cold hot"),
    "feeling": _W("happy tired hungry busy"),
    "direction": _W("left right"),
    "prep": _W("on under behind beside"),
    "pronoun": _W("we they she he i"),
    "vehicle": _W("train bus boat"),
}
TEMPLATES = [
    "the {colour} {animal} {moves} over {count} {size} {objects}",
    "please call my {relative} at {number}",
    "{name} {past} {count} {colour} {objects}",
    "{name} {past} the {adj} {object} in the {place}",
    "please {imp} the {colour} {object}",
    "can you {give} me the {adj} {object}",
    "we {activity} in the {place} every {daypart}",
    "my {relative} has {count} {animals}",
    "{count} {colour} {animals} sleep near the {place}",
    "turn {direction} at the {size} {landmark}",
    "it is {weather} and {temperature} {when}",
    "where is my {colour} {object}",
    "i can see {count} {animals} near the {place}",
    "{name} and {name} {activity} {when}",
    "do not {imp} the {adj} {object}",
    "the {object} is {prep} the {furniture}",
    "{name} {wants} {count} {colour} {objects}",
    "meet me at the {landmark} at {number}",
    "the {vehicle} leaves at {number} in the {daypart}",
    "{pronoun} {past} a {size} {animal} in the {place}",
    "put the {object} {prep} the {furniture}",
    "the {animal} is {feeling}",
    "who has the {colour} {object}",
    "{name} is {feeling} {when}",
    "my {relative} was {feeling} this {daypart}",
    "{pronoun} will visit the {place} {when}",
    "{name} {wants} {animals}",
    "{imp} the {object}",
    "{pronoun} {past} {count} {colour} {objects} in the {place} {when}",
    "the {colour} {vehicle} leaves the {landmark} at {number} {when}",
    "it was {weather} in the {place} this {daypart}",
    "the {size} {animal} {moves} behind the {colour} {furniture}",
    "please {give} my {relative} {count} {colour} {objects}",
    "{name} {wants} the {adj} {object} on the {furniture}",
    "{name} has a {adj} {object}",
    "it is {temperature} in the {place}",
]
_SLOT = re.compile(r"\{(\w+)\}")


def vocabulary() -> list[str]:
    """Every word the grammar can produce, sorted."""
    words = {"an"}  # "a" becomes "an" before a vowel
    for template in TEMPLATES:
        words.update(w for w in _SLOT.sub(" ", template).split())
        for slot in _SLOT.findall(template):
            words.update(SLOTS[slot])
    return sorted(words)


def make_sentence(rng: random.Random) -> str:
    """One sentence: a random template with random fillers (a slot used twice differs)."""
    template = rng.choice(TEMPLATES)
    used: dict[str, set[str]] = {}

    def fill(match: re.Match) -> str:
        slot = match.group(1)
        taken = used.setdefault(slot, set())
        word = rng.choice([w for w in SLOTS[slot] if w not in taken])
        taken.add(word)
        return word

    words = _SLOT.sub(fill, template).split()
    for i, word in enumerate(words[:-1]):
        if word == "a" and words[i + 1][0] in "aeiou":
            words[i] = "an"
    return " ".join(words)


# --- voices and the plan -----------------------------------------------------------------
def split_voices(seed: int = 0) -> dict[str, list[str]]:
    """Voices (``language+variant``) of each split; dev and test ones never speak in train.

    Each held-out voice has its own variant, paired with the languages in turn, so every
    language and every variant keeps several voices in train.
    """
    rng = random.Random(f"voices-{seed}")
    languages, variants = LANGUAGES[:], VARIANTS[:]
    rng.shuffle(languages)
    rng.shuffle(variants)
    voices: dict[str, list[str]] = {}
    k = 0
    for split in ("test", "dev"):
        n = N_HELDOUT_VOICES[split]
        voices[split] = [f"{languages[i % len(languages)]}+{variants[i]}" for i in range(k, k + n)]
        k += n
    held = set(voices["test"]) | set(voices["dev"])
    voices["train"] = [f"{lg}+{v}" for lg in LANGUAGES for v in VARIANTS if f"{lg}+{v}" not in held]
    return {split: voices[split] for split in SPLITS}


@dataclass(frozen=True)
class SynthJob:
    """Everything needed to render one utterance, drawn in the parent so that the plan does
    not depend on the number of workers."""

    split: str
    path: str
    text: str
    voice: str
    rate: int
    pitch: int
    pitch_range: int
    peak: float
    # Grammar sentences must get one word event each (their times are test material);
    # free text read aloud may not (numbers, merged words), and then carries no times.
    strict_words: bool = True
    sample_rate: int = SAMPLE_RATE  # of the written file


def _sentences(rng: random.Random, n: int, exclude: set[str], unique: bool) -> list[str]:
    out: list[str] = []
    seen = set(exclude)
    for _ in range(100 * n + 10_000):  # bounded: the grammar has a finite number of sentences
        if len(out) == n:
            return out
        text = make_sentence(rng)
        if text in seen:
            continue
        if unique:
            seen.add(text)
        out.append(text)
    raise ValueError(f"the grammar cannot give {n} sentences outside the {len(exclude)} excluded")


def _plan(out: Path, seed: int, sizes: dict[str, int]) -> list[SynthJob]:
    rng = random.Random(seed)
    voices = split_voices(seed)
    # Held-out sentences first, each unique; train may repeat a sentence but never one of
    # theirs, so dev/test measure recognition of new sentences by new voices.
    texts = {"test": _sentences(rng, sizes["test"], set(), unique=True)}
    texts["dev"] = _sentences(rng, sizes["dev"], set(), unique=True)
    texts["train"] = _sentences(rng, sizes["train"], set(texts["test"]) | set(texts["dev"]), False)
    jobs = []
    for split in SPLITS:
        for i, text in enumerate(texts[split]):
            jobs.append(
                SynthJob(
                    split=split,
                    path=str(out / "audio" / split / f"{split}-{i:05d}.flac"),
                    text=text,
                    voice=voices[split][i % len(voices[split])],  # round robin: balanced
                    rate=rng.randint(*RATE_WPM),
                    pitch=rng.randint(*PITCH),
                    pitch_range=rng.randint(*PITCH_RANGE),
                    peak=round(rng.uniform(*PEAK), 3),
                )
            )
    return jobs


# --- rendering ---------------------------------------------------------------------------
_espeak = Espeak()


def _init_worker() -> None:
    torch.set_num_threads(1)  # one core per worker: the workers are the parallelism


def write_clip(path: str, audio: np.ndarray, rate: int, new_rate: int, peak: float) -> float:
    """Resample ``audio`` to ``new_rate``, scale it to ``peak``, write 16-bit FLAC at
    ``path``; returns its duration in seconds."""
    wave = resample(torch.from_numpy(audio), rate, new_rate).numpy()
    wave = wave * (peak / max(float(np.abs(wave).max()), 1e-6))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, new_rate, subtype="PCM_16", format="FLAC")
    return len(wave) / new_rate


def render_espeak(job: SynthJob) -> dict:
    """Speak ``job`` with espeak-ng, write its file; returns its manifest entry."""
    result = _espeak.synthesize(job.text, job.voice, job.rate, job.pitch, job.pitch_range)
    duration = write_clip(job.path, result.audio, result.sample_rate, job.sample_rate, job.peak)
    words = [[w, min(start, duration), min(end, duration)] for w, start, end in result.words]
    entry = {
        "audio_filepath": job.path,
        "duration": duration,
        "text": job.text,
        "speaker": job.voice,
    }
    if [w[0] for w in words] == job.text.split():
        entry["words"] = words
    elif job.strict_words:  # every grammar word must get one event
        raise RuntimeError(f"espeak word events do not match {job.text!r} ({job.voice})")
    return entry


def render_all(
    jobs: Sequence[Any], workers: int, render: Callable[[Any], dict] = render_espeak
) -> list[dict]:
    """``render(job)`` for every job, in order, in ``workers`` spawned processes (``render``
    must be a module-level function, so that the workers can import it)."""
    if workers <= 1 or len(jobs) < 2:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny convolutions: extra threads only add overhead
        try:
            return [render(job) for job in jobs]
        finally:
            torch.set_num_threads(threads)
    # spawn, not fork: a forked torch/OpenMP runtime can hang, and each worker then
    # initialises its own libespeak-ng (which has global state).
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(jobs)), initializer=_init_worker) as pool:
        return list(pool.imap(render, jobs, chunksize=16))


# --- the corpus folder -------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$ASR_CACHE_DIR``, else ``${XDG_CACHE_HOME:-~/.cache}/asr``."""
    if os.environ.get("ASR_CACHE_DIR"):
        return Path(os.environ["ASR_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "asr"


def default_demo_dir(seed: int = 0) -> Path:
    """Where :func:`build_demo_corpus` puts the corpus when no folder is given."""
    return default_cache_dir() / f"demo-v{CORPUS_VERSION}-seed{seed}"


def corpus_complete(out: Path, params: dict, manifests: dict[str, Path]) -> bool:
    """True when ``out/corpus.json`` (written last) records ``params`` and every manifest
    exists: the folder holds a finished corpus made with these parameters."""
    try:
        stored = json.loads((out / "corpus.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    same = all(stored.get(key) == value for key, value in params.items())
    return same and all(path.is_file() for path in manifests.values())


def _clear(out: Path, manifests: dict[str, Path]) -> None:
    # The marker goes first, so an interrupted clean-up is still seen as incomplete.
    (out / "corpus.json").unlink(missing_ok=True)
    for path in manifests.values():
        path.unlink(missing_ok=True)
    for split in SPLITS:
        shutil.rmtree(out / "audio" / split, ignore_errors=True)


def build_demo_corpus(
    out_dir: str | Path | None = None,
    seed: int = 0,
    n_train: int = DEFAULT_SIZES["n_train"],
    n_dev: int = DEFAULT_SIZES["n_dev"],
    n_test: int = DEFAULT_SIZES["n_test"],
    workers: int = 2,
) -> dict[str, Path]:
    """Build (or reuse) the demo corpus in ``out_dir`` (default: :func:`default_demo_dir`).

    Returns ``{"train": path, "dev": path, "test": path}`` of the JSONL manifests. A folder
    holding a complete corpus made with the same parameters is returned untouched; anything
    else there that this function owns (audio/, manifests) is regenerated.
    Run from a script, keep the call under ``if __name__ == "__main__":`` when
    ``workers > 1`` (the workers are spawned).
    """
    sizes = {"train": n_train, "dev": n_dev, "test": n_test}
    if min(sizes.values()) < 1:
        raise ValueError(f"each split needs at least one utterance, got {sizes}")
    out = Path(out_dir) if out_dir is not None else default_demo_dir(seed)
    params = {"version": CORPUS_VERSION, "seed": seed, "sample_rate": SAMPLE_RATE}
    params.update({f"n_{split}": n for split, n in sizes.items()})
    manifests = {split: out / f"{split}.jsonl" for split in SPLITS}
    if corpus_complete(out, params, manifests):
        return manifests

    started = time.monotonic()
    _clear(out, manifests)
    jobs = _plan(out.resolve(), seed, sizes)
    log.info("synthesising %d utterances into %s with %d worker(s)", len(jobs), out, workers)
    entries = render_all(jobs, workers)
    for split in SPLITS:
        write_manifest(
            manifests[split], (e for j, e in zip(jobs, entries, strict=True) if j.split == split)
        )
    info = {
        **params,
        "vocabulary_size": len(vocabulary()),
        "hours": round(sum(e["duration"] for e in entries) / 3600, 3),
        "seconds_to_build": round(time.monotonic() - started, 1),
        "voices": split_voices(seed),
        "generation": {"rate_wpm": RATE_WPM, "pitch": PITCH, "pitch_range": PITCH_RANGE},
    }
    atomic_write_text(out / "corpus.json", json.dumps(info, indent=2) + "\n")  # last: marks done
    return manifests
