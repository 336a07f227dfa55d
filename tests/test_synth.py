"""espeak-ng synthesis through ctypes, and the synthetic demo corpus built with it."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from asr.audio import load_audio
from asr.manifest import read_manifest
from asr.synth import Espeak, SynthError, list_english_voices, list_variants


def _espeak_or_skip() -> Espeak:
    engine = Espeak()
    try:
        engine.synthesize("hello")
    except SynthError as exc:
        pytest.skip(f"espeak-ng unavailable: {exc}")
    return engine


@pytest.fixture(scope="module")
def espeak() -> Espeak:
    return _espeak_or_skip()


def test_synthesize_sentence(espeak):
    text = "the red fox jumps over seven green boxes"
    result = espeak.synthesize(text, voice="en-us+m3")
    assert result.sample_rate == 22050
    assert result.audio.dtype == np.float32 and result.audio.ndim == 1
    assert np.abs(result.audio).max() <= 1.0
    assert np.sqrt(np.mean(result.audio**2)) > 0.01  # not silence
    assert 1.0 < result.duration < 5.0  # eight words at 175 wpm
    # the trailing silence is trimmed to about 0.1 s
    tail = np.flatnonzero(np.abs(result.audio) > 0.01)[-1]
    assert len(result.audio) - tail < 0.2 * result.sample_rate

    assert [w for w, _, _ in result.words] == text.split()
    times = [t for _, start, end in result.words for t in (start, end)]
    assert times == sorted(times)
    assert all(end > start for _, start, end in result.words)
    assert times[0] >= 0 and times[-1] <= result.duration


def test_rate_changes_duration(espeak):
    slow = espeak.synthesize("please call my brother at nine", rate=120)
    fast = espeak.synthesize("please call my brother at nine", rate=240)
    assert slow.duration > 1.4 * fast.duration


def test_words_spoken_together_still_get_times(espeak):
    # espeak speaks "in the" as one word event; both words must still be timed
    result = espeak.synthesize("she washed an old monkey in the park", voice="en+paul")
    words = [w for w, _, _ in result.words]
    assert words == ["she", "washed", "an", "old", "monkey", "in", "the", "park"]
    times = [t for _, start, end in result.words for t in (start, end)]
    assert times == sorted(times)


def test_voices_differ(espeak):
    text = "where is my blue cup"
    male = espeak.synthesize(text, voice="en-us+m1")
    female = espeak.synthesize(text, voice="en-gb-x-rp+f3")
    n = min(len(male.audio), len(female.audio))
    assert not np.allclose(male.audio[:n], female.audio[:n], atol=0.05)

    # a female variant speaks higher: more zero crossings per second
    def crossings(audio):
        return np.mean(np.abs(np.diff(np.sign(audio))) > 0)

    assert crossings(female.audio) > crossings(male.audio)


@pytest.mark.parametrize("voice", ["xx-nowhere", "en-us+nosuchvariant", "en-gb", ""])
def test_unknown_voice_raises(espeak, voice):
    with pytest.raises(SynthError, match="unknown espeak-ng"):
        espeak.synthesize("hello", voice=voice)


def test_voice_lists():
    _espeak_or_skip()
    languages = list_english_voices()
    assert {"en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-029"} <= set(languages)
    variants = list_variants()
    assert {"m1", "m7", "f1", "f5", "whisper"} <= set(variants)


def test_demo_vocabulary_and_voices():
    from asr.demo import LANGUAGES, VARIANTS, make_sentence, split_voices, vocabulary

    words = vocabulary()
    assert 150 <= len(words) <= 200
    assert not {"to", "too", "for", "hat", "read", "ate"} & set(words)  # homophones
    assert set(LANGUAGES) <= set(list_english_voices())
    assert set(VARIANTS) <= set(list_variants())

    import random

    rng = random.Random(0)
    lengths = [len(make_sentence(rng).split()) for _ in range(500)]
    assert min(lengths) >= 3 and max(lengths) <= 9

    voices = split_voices(0)
    assert not set(voices["train"]) & (set(voices["dev"]) | set(voices["test"]))
    assert not set(voices["dev"]) & set(voices["test"])
    assert voices == split_voices(0) and voices != split_voices(1)
    # every language and variant of a held-out voice is heard in train too
    train_parts = {part for voice in voices["train"] for part in voice.split("+")}
    held_parts = {part for s in ("dev", "test") for v in voices[s] for part in v.split("+")}
    assert held_parts <= train_parts


def test_tiny_demo_corpus(tmp_path):
    _espeak_or_skip()
    from asr.audio import load_audio
    from asr.demo import build_demo_corpus
    from asr.manifest import read_manifest

    sizes = dict(n_train=6, n_dev=2, n_test=2)
    paths = build_demo_corpus(tmp_path / "a", seed=3, workers=1, **sizes)
    assert set(paths) == {"train", "dev", "test"}
    splits = {name: read_manifest(path) for name, path in paths.items()}
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [6, 2, 2]

    speakers = {name: {u.speaker for u in utts} for name, utts in splits.items()}
    assert not speakers["train"] & (speakers["dev"] | speakers["test"])
    for utt in splits["train"] + splits["test"]:
        words = utt.extra["words"]
        assert [w for w, _, _ in words] == utt.text.split()
        assert words[0][1] >= 0 and words[-1][2] <= utt.duration + 1e-3
        audio = load_audio(utt.audio_filepath, 16000)
        assert abs(len(audio) / 16000 - utt.duration) < 1e-3
        assert float(audio.abs().max()) > 0.1

    # second call: a no-op that leaves every file untouched
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*") if p.is_file()}
    started = time.monotonic()
    assert build_demo_corpus(tmp_path / "a", seed=3, workers=1, **sizes) == paths
    assert time.monotonic() - started < 0.5
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}

    # same seed, other folder: same texts and voices
    again = build_demo_corpus(tmp_path / "b", seed=3, workers=1, **sizes)
    for name in paths:
        first = [(u.text, u.speaker) for u in splits[name]]
        assert first == [(u.text, u.speaker) for u in read_manifest(again[name])]


def test_partial_corpus_is_rebuilt(tmp_path):
    _espeak_or_skip()
    from asr.demo import build_demo_corpus
    from asr.manifest import read_manifest

    sizes = dict(n_train=2, n_dev=1, n_test=1)
    paths = build_demo_corpus(tmp_path, seed=0, workers=1, **sizes)
    info = json.loads((tmp_path / "corpus.json").read_text())
    assert info["version"] >= 1 and info["n_train"] == 2
    # a killed run leaves no corpus.json: everything is made again
    (tmp_path / "corpus.json").unlink()
    paths["train"].unlink()
    paths = build_demo_corpus(tmp_path, seed=0, workers=1, **sizes)
    assert len(read_manifest(paths["train"])) == 2
    # other parameters: rebuilt with the new sizes
    paths = build_demo_corpus(tmp_path, seed=0, workers=1, n_train=3, n_dev=1, n_test=1)
    assert len(read_manifest(paths["train"])) == 3


def test_default_cache_dir(monkeypatch, tmp_path):
    from asr.demo import default_cache_dir, default_demo_dir

    monkeypatch.setenv("ASR_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert default_demo_dir(2) == tmp_path / "c" / "demo-v1-seed2"
    monkeypatch.delenv("ASR_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "asr"


def test_parallel_build_matches_serial(tmp_path):
    _espeak_or_skip()
    from asr.demo import build_demo_corpus
    from asr.manifest import read_manifest

    sizes = dict(n_train=4, n_dev=1, n_test=1)
    serial = build_demo_corpus(tmp_path / "serial", seed=5, workers=1, **sizes)
    parallel = build_demo_corpus(tmp_path / "parallel", seed=5, workers=2, **sizes)
    for name in serial:
        one = read_manifest(serial[name])
        two = read_manifest(parallel[name])
        assert [(u.text, u.speaker) for u in one] == [(u.text, u.speaker) for u in two]
        # espeak carries a little state between utterances: durations agree to a few ms
        assert all(abs(a.duration - b.duration) < 0.05 for a, b in zip(one, two, strict=True))


def test_reading_corpus_reads_lines_with_many_voices(tmp_path):
    import gzip

    from asr.reading import build_reading_corpus, read_sentences

    text = tmp_path / "lines.txt.gz"
    lines = ["the cat sat on the mat", "a b", "it was twenty one years ago", "one two three four"]
    with gzip.open(text, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    chosen = read_sentences(text, 3, seed=0)
    assert sorted(chosen) == sorted(line for line in lines if len(line.split()) >= 3)
    manifest = build_reading_corpus(text, 3, tmp_path / "read", workers=1)
    utts = read_manifest(manifest)
    assert sorted(u.text for u in utts) == sorted(chosen)
    assert len({u.speaker for u in utts}) == 3
    assert all(load_audio(u.audio_filepath, 16000).shape[0] > 8000 for u in utts)
    with pytest.raises(ValueError, match="only 3 lines"):
        read_sentences(text, 4, seed=0)
