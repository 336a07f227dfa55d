"""Property-based tests: whatever bytes, samples or lines come in, the answer is a result or
one of the project's own clear errors, never a stray exception from deep inside a library."""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import random_checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asr.audio import AudioError, load_audio
from asr.data import SpeechDataset, collate
from asr.features import FeatureSpec, LogMel
from asr.manifest import ManifestError, read_manifest
from asr.text import normalize_text

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _scratch() -> Path:
    # Hypothesis reruns the test body many times; a function-scoped tmp_path would be shared.
    return Path(tempfile.mkdtemp(prefix="asr-hyp-"))


@SETTINGS
@given(
    data=st.binary(max_size=600),
    suffix=st.sampled_from([".wav", ".flac", ".ogg", ".mp3", ".raw", ".txt", ""]),
)
def test_loader_on_arbitrary_bytes(data: bytes, suffix: str) -> None:
    path = _scratch() / f"clip{suffix}"
    path.write_bytes(data)
    try:
        wave = load_audio(path, 16000)
    except AudioError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    assert wave.dtype == torch.float32 and wave.ndim == 1 and torch.isfinite(wave).all()


@SETTINGS
@given(
    frames=st.integers(0, 3000),
    channels=st.integers(1, 6),
    rate=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000]),
    subtype=st.sampled_from(["PCM_16", "PCM_24", "FLOAT"]),
    fill=st.sampled_from(["noise", "clipped", "nan", "inf", "silence"]),
)
def test_loader_on_arbitrary_wavs(
    frames: int, channels: int, rate: int, subtype: str, fill: str
) -> None:
    rng = np.random.default_rng(frames)
    data = {
        "noise": rng.uniform(-0.5, 0.5, (frames, channels)),
        "clipped": np.clip(rng.normal(0, 3, (frames, channels)), -1, 1),
        "nan": np.full((frames, channels), np.nan),
        "inf": np.full((frames, channels), np.inf),
        "silence": np.zeros((frames, channels)),
    }[fill].astype(np.float32)
    path = _scratch() / "clip.wav"
    sf.write(path, data, rate, subtype=subtype)
    non_finite = fill in ("nan", "inf") and subtype == "FLOAT"
    if frames == 0 or (non_finite and frames):
        with pytest.raises(AudioError, match=re.escape(str(path))):
            load_audio(path, 16000)
        return
    wave = load_audio(path, 16000)
    assert torch.isfinite(wave).all()
    assert abs(wave.shape[0] - frames * 16000 / rate) <= 1
    # Sub-frame clips still give at least one feature frame through the whole pipeline.
    feats, lengths = LogMel(FeatureSpec())(wave[None], torch.tensor([wave.shape[0]]))
    assert lengths[0] == wave.shape[0] // 160 + 1 and torch.isfinite(feats).all()


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
_LINE = st.one_of(
    st.binary(max_size=40),
    st.dictionaries(
        st.sampled_from(["audio_filepath", "duration", "text", "speaker"]), _JSON_VALUES, max_size=4
    ).map(lambda d: json.dumps(d).encode()),
    st.builds(
        lambda d, t: json.dumps({"audio_filepath": "a.wav", "duration": d, "text": t}).encode(),
        st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5, 5) | st.text(max_size=3),
        st.text(max_size=10) | st.integers(),
    ),
)


@SETTINGS
@given(lines=st.lists(_LINE, max_size=5))
def test_manifest_reader_on_arbitrary_lines(lines: list[bytes]) -> None:
    folder = _scratch()
    (folder / "a.wav").write_bytes(b"")
    path = folder / "m.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines))
    try:
        utterances = read_manifest(path)
    except ManifestError as exc:
        message = str(exc)
        assert message.startswith(str(path)) and "\n" not in message
        return
    for utt in utterances:
        assert math.isfinite(utt.duration) and utt.duration > 0 and isinstance(utt.text, str)
        assert Path(utt.audio_filepath).is_file()


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=60))
def test_normaliser_properties(text: str) -> None:
    out = normalize_text(text)
    assert out == normalize_text(out)  # idempotent
    assert out == out.strip() and "  " not in out
    assert out == out.lower() or not out.isascii()
    assert all(c.isalnum() or c in "' " for c in out), out
    assert not out.startswith("'") and not out.endswith("'")


def test_unreadable_training_file_is_listed_not_fatal(tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    sf.write(good, np.zeros(1600, dtype=np.float32), 16000)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage")
    (tmp_path / "m.jsonl").write_text(
        "\n".join(
            json.dumps({"audio_filepath": n, "duration": 0.1, "text": "a"})
            for n in ("good.wav", "bad.wav")
        )
    )
    utts = read_manifest(tmp_path / "m.jsonl")
    dataset = SpeechDataset(utts, LogMel(FeatureSpec()))
    batch = collate([dataset[0], dataset[1]])
    assert batch.indices == [0]
    assert batch.failed and batch.failed[0][0] == 1 and "m.jsonl:2" in batch.failed[0][1]


def test_a_fault_inside_a_long_file_names_the_file(tmp_path: Path) -> None:
    from asr.longform import ChunkSpec
    from asr.transcribe import Transcriber

    model = random_checkpoint(tmp_path / "m.pt")
    long_file = tmp_path / "long.wav"
    data = np.zeros(12 * 16000, dtype=np.float32)
    data[11 * 16000] = np.inf  # past the first chunk: found while streaming
    sf.write(long_file, data, 16000, subtype="FLOAT")
    transcriber = Transcriber.from_checkpoint(model, "cpu", chunk=ChunkSpec(4.0, 1.0))
    with pytest.raises(AudioError, match=r"long\.wav: contains NaN or infinite samples"):
        transcriber.transcribe([long_file])
    [skipped] = transcriber.transcribe([long_file], skip_errors=True)
    assert "long.wav" in skipped.error and not skipped.text


def test_audio_longer_than_its_manifest_says_is_skipped(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", np.zeros(5 * 16000, dtype=np.float32), 16000)
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"audio_filepath": "a.wav", "duration": 0.5, "text": "a"}) + "\n"
        + json.dumps({"audio_filepath": "a.wav", "duration": 4.9, "text": "a"}) + "\n"
    )  # fmt: skip
    dataset = SpeechDataset(read_manifest(tmp_path / "m.jsonl"), LogMel(FeatureSpec()))
    assert "m.jsonl:1: " in dataset[0]["error"] and "manifest says 0.5 s" in dataset[0]["error"]
    assert "error" not in dataset[1]
