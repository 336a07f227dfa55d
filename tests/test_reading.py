"""Flite synthesis and the Flite reading corpus (synthetic training speech)."""

from __future__ import annotations

import gzip
import json

import librosa
import numpy as np
import pytest
import soundfile as sf

from asr.audio import load_audio
from asr.flite import VOICES, Flite, flite_program
from asr.manifest import read_manifest
from asr.reading import build_reading_corpus, read_sentences
from asr.synth import SynthError

SENTENCE = "author of the danger trail philip steels"


@pytest.fixture(scope="module")
def flite() -> Flite:
    try:
        flite_program()
    except SynthError as exc:
        pytest.skip(str(exc))  # .ci/run installs it; a bare developer machine may not have it
    return Flite()


def _median_f0(audio: np.ndarray, rate: int) -> float:
    f0, _, _ = librosa.pyin(audio, fmin=60, fmax=400, sr=rate, frame_length=1024)
    return float(np.nanmedian(f0))


def test_every_voice_speaks_at_16k(flite):
    for voice in VOICES:
        result = flite.synthesize(SENTENCE, voice)
        assert result.sample_rate == 16000
        assert result.audio.dtype == np.float32 and result.audio.ndim == 1
        assert 1.0 < result.duration < 6.0, voice  # seven words
        assert np.sqrt(np.mean(result.audio**2)) > 0.01, voice  # not silence


def test_stretch_and_pitch_follow_the_settings(flite):
    plain = flite.synthesize(SENTENCE, "slt")
    slow = flite.synthesize(SENTENCE, "slt", stretch=1.3)
    assert 1.2 < slow.duration / plain.duration < 1.4
    low = flite.synthesize(SENTENCE, "slt", f0_mean=130.0)
    high = flite.synthesize(SENTENCE, "slt", f0_mean=220.0)
    assert _median_f0(high.audio, 16000) > 1.4 * _median_f0(low.audio, 16000)


def test_bad_settings_and_missing_program_are_one_line_errors(monkeypatch):
    flite = Flite()  # no flite program needed: settings are checked first
    with pytest.raises(SynthError, match="unknown flite voice 'kal'"):
        flite.synthesize(SENTENCE, "kal")
    with pytest.raises(SynthError, match="stretch must be"):
        flite.synthesize(SENTENCE, "slt", stretch=3.0)
    with pytest.raises(SynthError, match="f0_mean must be"):
        flite.synthesize(SENTENCE, "slt", f0_mean=20.0)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SynthError, match="apt-get install flite"):
        flite.synthesize(SENTENCE, "slt")


def test_text_starting_with_a_dash_is_spoken(flite):
    assert flite.synthesize("-- well then", "rms").duration > 0.3


def test_flite_corpus_reads_other_sentences_with_every_voice(flite, tmp_path):
    text = tmp_path / "lines.txt.gz"
    lines = [f"this is sentence number {w} of the test" for w in "abcdefghijkl"]
    with gzip.open(text, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    manifest = build_reading_corpus(text, 8, tmp_path / "flite", workers=1, engine="flite")
    utts = read_manifest(manifest)
    assert sorted(u.text for u in utts) == sorted(read_sentences(text, 8, 0, stream="flite"))
    assert read_sentences(text, 8, 0, stream="flite") != read_sentences(text, 8, 0)
    assert {u.speaker for u in utts} == {f"flite-{v}" for v in VOICES}
    for utt in utts:
        audio = load_audio(utt.audio_filepath, 16000)
        assert abs(audio.shape[0] / 16000 - utt.duration) < 0.01
        assert 0.2 < float(audio.abs().max()) <= 0.91  # the drawn peak level
    info = json.loads((tmp_path / "flite" / "corpus.json").read_text())
    assert info["n"] == 8
    # a complete folder is reused as it is
    stamp = (tmp_path / "flite" / "train.jsonl").stat().st_mtime_ns
    assert build_reading_corpus(text, 8, tmp_path / "flite", workers=1, engine="flite") == manifest
    assert (tmp_path / "flite" / "train.jsonl").stat().st_mtime_ns == stamp


def test_warp_raises_pitch_and_shortens(flite, tmp_path):
    from asr.reading import _FliteJob, _render_flite

    def render(warp: float) -> np.ndarray:
        job = _FliteJob(str(tmp_path / f"{warp}.flac"), SENTENCE, "rms", 1.0, 105.0, warp, 0.5)
        return load_audio(_render_flite(job)["audio_filepath"], 16000).numpy()

    low, high = render(0.88), render(1.12)
    assert abs(len(low) / len(high) - 1.12 / 0.88) < 0.02
    assert 1.15 < _median_f0(high, 16000) / _median_f0(low, 16000) < 1.4


def test_digit_corpus_balances_digits_engines_and_rates(flite, tmp_path):
    from asr.reading import DIGITS, build_digit_corpus

    manifest = build_digit_corpus(40, tmp_path / "digits", workers=1)
    utts = read_manifest(manifest)
    assert [u.text for u in utts[::2]] == DIGITS * 2  # espeak-ng's turns
    assert [u.text for u in utts[1::2]] == DIGITS * 2  # Flite's turns
    flite_speakers = {u.speaker for u in utts[1::2]}
    assert {u.speaker for u in utts[1:20:2]} == {"flite-awb"}  # a voice says all ten
    assert flite_speakers == {"flite-awb", "flite-kal16"}
    assert not any(u.speaker.startswith("flite") for u in utts[::2])
    rates = {sf.info(u.audio_filepath).samplerate for u in utts}
    assert rates == {8000, 16000}
    assert all(0.15 < u.duration < 2.0 for u in utts)


def test_cli_makes_digits(flite, tmp_path, capsys):
    from asr.cli import demo_corpus_main

    demo_corpus_main(["--digits", "4", "--out", str(tmp_path / "d"), "--workers", "1"])
    assert capsys.readouterr().out == f"train\t{tmp_path / 'd' / 'train.jsonl'}\n"
    assert len(read_manifest(tmp_path / "d" / "train.jsonl")) == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["--digits", "-3"], "--digits must be positive"),
        (["--digits", "3", "--read", "x.txt"], "give one"),
        (["--engine", "flite"], "--engine chooses the voices of --read"),
    ],
)
def test_cli_refuses_contradictory_options(args, message, capsys):
    from asr.cli import demo_corpus_main

    with pytest.raises(SystemExit) as stop:
        demo_corpus_main(args)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_cli_names_a_missing_flite(tmp_path, monkeypatch, capsys):
    from asr.cli import demo_corpus_main

    monkeypatch.setenv("PATH", str(tmp_path))  # no flite there
    text = tmp_path / "lines.txt"
    text.write_text("one two three four\n")
    with pytest.raises(SystemExit) as stop:
        demo_corpus_main(["--read", str(text), "-n", "1", "--engine", "flite"])
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "apt-get install flite" in error


def test_parallel_build_matches_serial(flite, tmp_path):
    from asr.reading import build_digit_corpus

    serial = read_manifest(build_digit_corpus(6, tmp_path / "one", workers=1))
    parallel = read_manifest(build_digit_corpus(6, tmp_path / "two", workers=2))
    assert [(u.text, u.speaker) for u in serial] == [(u.text, u.speaker) for u in parallel]
    for a, b in zip(serial, parallel, strict=True):
        # the same drawn settings give the same clip (espeak-ng: to a few ms)
        assert abs(a.duration - b.duration) < 0.05
        assert sf.info(a.audio_filepath).samplerate == sf.info(b.audio_filepath).samplerate
