"""Tests for asr.audio: decoding, mixdown, resampling, headerless PCM and error reporting."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.audio import AudioError, RawFormat, audio_info, load_audio

RATE = 16000
FREQ = 440.0


def sine(seconds, rate, freq=FREQ, amp=0.5):
    t = np.arange(int(round(seconds * rate))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(wave, rate):
    """Frequency (Hz) of the largest FFT bin, and the bin width."""
    x = np.asarray(wave, dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spectrum) * rate / len(x), rate / len(x)


def assert_tone(wave, freq=FREQ, rate=RATE):
    found, bin_width = peak_frequency(wave, rate)
    assert abs(found - freq) <= bin_width, f"peak at {found} Hz, expected {freq} Hz"


# ------------------------------------------------------------------ formats

# (extension, soundfile write kwargs, length tolerance in samples: one codec frame for lossy)
FORMATS = [
    ("wav", {"subtype": "PCM_16"}, 0),
    ("flac", {"subtype": "PCM_16"}, 0),
    ("ogg", {"format": "OGG", "subtype": "VORBIS"}, 2048),  # longest Vorbis block
    ("mp3", {"format": "MP3", "subtype": "MPEG_LAYER_III"}, 1152),  # MPEG-1 layer III frame
]


@pytest.mark.parametrize(("ext", "kwargs", "tolerance"), FORMATS, ids=[f[0] for f in FORMATS])
def test_load_formats(tmp_path, ext, kwargs, tolerance):
    seconds = 1.0
    wave = sine(seconds, RATE)
    path = tmp_path / f"tone.{ext}"
    try:
        sf.write(path, wave, RATE, **kwargs)
    except (sf.LibsndfileError, ValueError, TypeError) as exc:
        pytest.skip(f"libsndfile here cannot write {ext}: {exc}")
    out = load_audio(path, RATE)
    assert out.dtype == torch.float32
    assert out.ndim == 1
    assert abs(out.shape[0] - seconds * RATE) <= tolerance
    assert_tone(out.numpy())
    if tolerance == 0:  # lossless: the samples themselves survive (16-bit quantisation)
        np.testing.assert_allclose(out.numpy(), wave, atol=1.0 / 32768)
    assert float(out.abs().max()) <= 1.0


@pytest.mark.parametrize("channels", [2, 6])
def test_multichannel_mixdown_is_channel_mean(tmp_path, channels):
    rng = np.random.default_rng(channels)
    n = 4000
    data = np.stack(
        [sine(n / RATE, RATE, freq=200.0 * (c + 1), amp=0.3) for c in range(channels)], axis=1
    )
    data += 0.05 * rng.standard_normal(data.shape).astype(np.float32)
    path = tmp_path / f"multi{channels}.wav"
    sf.write(path, data, RATE, subtype="FLOAT")  # float wav: samples stored exactly
    out = load_audio(path, RATE)
    assert out.shape == (n,)
    expected = data.astype(np.float64).sum(axis=1) / channels
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)


def test_mono_is_returned_unchanged(tmp_path):
    wave = np.random.default_rng(1).uniform(-0.9, 0.9, 3000).astype(np.float32)
    path = tmp_path / "mono.wav"
    sf.write(path, wave, RATE, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path, RATE).numpy(), wave)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_keeps_length_and_frequency(tmp_path, rate):
    seconds = 0.5
    path = tmp_path / f"tone_{rate}.wav"
    sf.write(path, sine(seconds, rate), rate, subtype="FLOAT")
    out = load_audio(path, RATE)
    assert abs(out.shape[0] - seconds * RATE) <= 1
    assert_tone(out.numpy())
    # The amplitude survives a band-limited resampler (away from the edges).
    middle = out[RATE // 10 : -RATE // 10]
    assert float(middle.abs().max()) == pytest.approx(0.5, abs=0.02)


def test_resampling_to_another_target_rate(tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(path, sine(0.5, RATE), RATE, subtype="FLOAT")
    out = load_audio(path, 8000)
    assert abs(out.shape[0] - 4000) <= 1
    assert_tone(out.numpy(), rate=8000)


# ------------------------------------------------------------------ raw PCM


def test_raw_pcm_mono(tmp_path):
    ints = (np.random.default_rng(2).uniform(-1, 1, 2000) * 20000).astype("<i2")
    path = tmp_path / "clip.raw"
    ints.tofile(path)
    out = load_audio(path, RATE, raw=RawFormat(sample_rate=RATE))
    np.testing.assert_allclose(out.numpy(), ints.astype(np.float64) / 32768, atol=1e-7)


def test_raw_pcm_stereo_big_endian(tmp_path):
    ints = (np.random.default_rng(3).uniform(-1, 1, (1500, 2)) * 20000).astype(">i2")
    path = tmp_path / "clip.pcm"
    ints.tofile(path)  # interleaved frames
    out = load_audio(path, RATE, raw=RawFormat(sample_rate=RATE, channels=2, endian="BIG"))
    expected = ints.astype(np.float64).mean(axis=1) / 32768
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-7)


def test_raw_pcm_is_resampled(tmp_path):
    ints = (sine(0.5, 8000) * 32767).astype("<i2")
    path = tmp_path / "clip.raw"
    ints.tofile(path)
    out = load_audio(path, RATE, raw=RawFormat(sample_rate=8000))
    assert abs(out.shape[0] - 8000) <= 1
    assert_tone(out.numpy())


# ------------------------------------------------------------------ audio_info


@pytest.mark.parametrize(("rate", "frames"), [(8000, 4000), (22050, 11025), (16000, 12345)])
def test_audio_info(tmp_path, rate, frames):
    path = tmp_path / "x.flac"
    sf.write(path, np.zeros(frames, np.float32), rate)
    duration, native = audio_info(path)
    assert native == rate
    assert duration == pytest.approx(frames / rate)


def test_audio_info_errors_name_the_file(tmp_path):
    missing = tmp_path / "absent_info.wav"
    with pytest.raises(AudioError, match="absent_info.wav"):
        audio_info(missing)
    garbage = tmp_path / "garbage_info.wav"
    garbage.write_bytes(np.random.default_rng(4).bytes(3000))
    with pytest.raises(AudioError, match="garbage_info.wav"):
        audio_info(garbage)


# ------------------------------------------------------------------ errors


def _error_message(path, **kwargs):
    with pytest.raises(AudioError) as info:
        load_audio(path, RATE, **kwargs)
    return str(info.value)


def test_missing_file(tmp_path):
    message = _error_message(tmp_path / "not_there.wav")
    assert "not_there.wav" in message


def test_directory(tmp_path):
    folder = tmp_path / "a_folder.wav"
    folder.mkdir()
    assert "a_folder.wav" in _error_message(folder)


def test_zero_length_wav(tmp_path):
    path = tmp_path / "empty_clip.wav"
    sf.write(path, np.zeros(0, np.float32), RATE)
    assert sf.info(path).frames == 0  # a valid header with no samples
    assert "empty_clip.wav" in _error_message(path)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "zero_bytes.wav"
    path.write_bytes(b"")
    assert "zero_bytes.wav" in _error_message(path)


def test_corrupt_bytes(tmp_path):
    path = tmp_path / "garbage_clip.wav"
    path.write_bytes(np.random.default_rng(5).bytes(8000))
    assert "garbage_clip.wav" in _error_message(path)


def test_truncated_flac(tmp_path):
    rng = np.random.default_rng(6)
    wave = sine(2.0, RATE, amp=0.3) + 0.01 * rng.standard_normal(2 * RATE).astype(np.float32)
    full = tmp_path / "full.flac"
    sf.write(full, wave, RATE)
    data = full.read_bytes()
    cut = tmp_path / "cut_clip.flac"
    cut.write_bytes(data[: len(data) // 2])
    assert "cut_clip.flac" in _error_message(cut)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path, bad):
    wave = sine(0.1, RATE)
    wave[37] = bad
    path = tmp_path / "nonfinite_clip.wav"
    sf.write(path, wave, RATE, subtype="FLOAT")
    assert "nonfinite_clip.wav" in _error_message(path)


def test_raw_file_without_layout_is_an_error(tmp_path):
    path = tmp_path / "headerless.raw"
    (np.arange(1000) % 200).astype("<i2").tofile(path)
    assert "headerless.raw" in _error_message(path)


def test_audio_error_is_a_value_error():
    assert issubclass(AudioError, ValueError)


# ------------------------------------------------------------------ real data


def shared_data() -> Path:
    env = os.environ.get("ASR_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def first_entry(corpus, suffix):
    folder = shared_data() / corpus
    for name in ("train.jsonl", "dev.jsonl"):
        manifest = folder / name
        if not manifest.is_file():
            continue
        for line in manifest.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            audio = folder / entry["audio_filepath"]
            if audio.suffix == suffix and audio.is_file():
                return audio, float(entry["duration"])
    pytest.skip(f"no {corpus} {suffix} audio with a manifest under {folder} (set ASR_SHARED_DATA)")


@pytest.mark.parametrize(
    ("corpus", "suffix", "native"), [("fsdd", ".wav", 8000), ("kathleen", ".flac", 16000)]
)
def test_real_files(corpus, suffix, native):
    audio, duration = first_entry(corpus, suffix)
    seconds, rate = audio_info(audio)
    assert rate == native
    assert seconds == pytest.approx(duration, abs=0.01)
    wave = load_audio(audio, RATE)
    assert wave.dtype == torch.float32 and wave.ndim == 1
    assert abs(wave.shape[0] / RATE - duration) <= 0.010
    assert torch.isfinite(wave).all()
    assert float(wave.abs().max()) > 0.0  # not silence
