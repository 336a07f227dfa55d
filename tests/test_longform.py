"""Long audio: streaming reads, cuts at pauses, overlapped fallback cuts, stitched words."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import random_checkpoint

from asr.audio import AudioError, load_audio
from asr.decoding import Word
from asr.longform import Chunk, ChunkSpec, keep_words, split_stream, stream_audio

RATE = 16000


def bursts(seconds_on: list[float], gap: float = 0.6, seed: int = 0) -> np.ndarray:
    """Loud noisy "speech" bursts separated by near-silent gaps; returns the wave."""
    rng = np.random.default_rng(seed)
    parts = []
    for on in seconds_on:
        n = int(on * RATE)
        t = np.arange(n) / RATE
        parts.append(0.3 * np.sin(2 * np.pi * 180 * t) + 0.1 * rng.standard_normal(n))
        parts.append(1e-4 * rng.standard_normal(int(gap * RATE)))
    return np.concatenate(parts).astype(np.float32)


def blocks_of(wave: np.ndarray, size: int):
    for i in range(0, len(wave), size):
        yield wave[i : i + size]


def gap_intervals(seconds_on: list[float], gap: float = 0.6) -> list[tuple[float, float]]:
    out, t = [], 0.0
    for on in seconds_on:
        out.append((t + on, t + on + gap))
        t += on + gap
    return out


def test_cuts_land_in_pauses_and_chunks_tile_the_file():
    on = [3.1, 4.7, 2.2, 5.0, 3.3, 4.1, 2.8, 3.9, 4.4, 1.5]
    wave = bursts(on)
    spec = ChunkSpec(chunk_seconds=10.0, overlap_seconds=1.0)
    chunks = list(split_stream(blocks_of(wave, 7 * RATE), RATE, spec))
    assert len(chunks) > 3
    assert np.array_equal(np.concatenate([c.wave for c in chunks]), wave)  # no overlap used
    gaps = gap_intervals(on)
    for chunk in chunks:
        assert len(chunk.wave) <= spec.chunk_seconds * RATE
        assert chunk.keep_from == float("-inf") and chunk.keep_until == float("inf")
        if chunk.start > 0:
            assert any(a <= chunk.start <= b for a, b in gaps), chunk.start


def test_block_size_does_not_change_the_cuts():
    wave = bursts([3.1, 4.7, 2.2, 5.0, 3.3, 4.1, 2.8], seed=1)
    spec = ChunkSpec(chunk_seconds=8.0, overlap_seconds=1.0)
    starts = {
        size: [c.start for c in split_stream(blocks_of(wave, size), RATE, spec)]
        for size in (RATE // 3, 5 * RATE, len(wave))
    }
    assert len(set(map(tuple, starts.values()))) == 1


def test_without_pauses_chunks_overlap_and_split_the_shared_stretch():
    wave = (0.2 * np.random.default_rng(2).standard_normal(35 * RATE)).astype(np.float32)
    spec = ChunkSpec(chunk_seconds=10.0, overlap_seconds=2.0)
    chunks = list(split_stream(blocks_of(wave, 3 * RATE), RATE, spec))
    assert [c.start for c in chunks] == [0.0, 8.0, 16.0, 24.0, 32.0]
    assert all(len(c.wave) == 10 * RATE for c in chunks[:-1])
    assert chunks[-1].start + len(chunks[-1].wave) / RATE == 35.0
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.keep_until == b.keep_from == b.start + 1.0  # middle of the 2 s overlap
        start = int(b.start * RATE)
        assert np.array_equal(a.wave[start - int(a.start * RATE) :], wave[start : start + 2 * RATE])


def test_a_quiet_recording_without_pauses_is_not_cut_as_if_it_paused():
    # steady noise at -58 dBFS: quiet, but no dip anywhere, so no "pause" cut
    wave = (0.0018 * np.random.default_rng(5).standard_normal(25 * RATE)).astype(np.float32)
    chunks = list(split_stream(blocks_of(wave, 4 * RATE), RATE, ChunkSpec(10.0, 2.0)))
    assert [c.start for c in chunks] == [0.0, 8.0, 16.0]
    assert chunks[0].keep_until == 9.0


def test_a_short_tail_after_an_overlapped_cut_is_kept():
    wave = (0.2 * np.random.default_rng(3).standard_normal(int(10.5 * RATE))).astype(np.float32)
    chunks = list(split_stream(iter([wave]), RATE, ChunkSpec(10.0, 2.0)))
    assert [c.start for c in chunks] == [0.0, 8.0]
    assert chunks[1].keep_from == 9.0 and len(chunks[1].wave) == int(2.5 * RATE)


def test_keep_words_moves_to_file_time_and_splits_by_centre():
    words = [Word("a", 0.0, 0.4, 0.9), Word("b", 0.8, 1.4, 0.8), Word("c", 1.5, 1.9, 0.7)]
    chunk = Chunk(10.0, np.zeros(2 * RATE, np.float32), keep_from=10.5, keep_until=11.5)
    kept = keep_words(words, chunk)
    assert kept == [Word("b", 10.8, 11.4, 0.8)]
    everything = keep_words(words, Chunk(10.0, np.zeros(1, np.float32)))
    assert [w.start for w in everything] == [10.0, 10.8, 11.5]


@pytest.mark.parametrize("rate,channels", [(16000, 1), (8000, 1), (44100, 2), (22050, 3)])
def test_stream_audio_matches_load_audio(tmp_path: Path, rate: int, channels: int):
    rng = np.random.default_rng(rate)
    data = (0.3 * rng.standard_normal((int(7.3 * rate), channels))).astype(np.float32)
    path = tmp_path / "a.flac"
    sf.write(path, data, rate, subtype="PCM_24")
    whole = load_audio(path, RATE).numpy()
    streamed = np.concatenate(list(stream_audio(path, RATE, block_seconds=1.7)))
    assert abs(len(streamed) - len(whole)) <= 1
    n = min(len(streamed), len(whole))
    # the streaming resampler keeps its filter state across blocks: equal to the one-shot
    # resampler away from the file's two ends
    assert np.max(np.abs(streamed[100 : n - 100] - whole[100 : n - 100])) < 1e-3


def test_stream_audio_errors_name_the_file(tmp_path: Path):
    with pytest.raises(AudioError, match="missing.wav: file not found"):
        list(stream_audio(tmp_path / "missing.wav", RATE))
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), RATE)
    with pytest.raises(AudioError, match="empty.wav: contains no audio"):
        list(stream_audio(empty, RATE))
    bad = tmp_path / "nan.wav"
    data = np.zeros(5 * RATE, np.float32)
    data[4 * RATE] = np.nan
    sf.write(bad, data, RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav: contains NaN"):
        list(stream_audio(bad, RATE, block_seconds=1.0))
    junk = tmp_path / "junk.flac"
    junk.write_bytes(b"fLaC" + bytes(range(256)) * 8)
    with pytest.raises(AudioError, match="junk.flac: cannot decode"):
        list(stream_audio(junk, RATE))


@pytest.mark.parametrize("chunk_seconds", [6.0, 10.0])
def test_long_files_are_stitched_from_their_pieces(tmp_path: Path, chunk_seconds: float):
    """Chunked transcription = decoding each pause-delimited piece alone, shifted in time."""
    from asr.transcribe import Transcriber

    torch.manual_seed(0)
    model = random_checkpoint(tmp_path / "m.pt", scale=4.0)
    on = [2.1, 3.7, 1.2, 4.0, 2.3, 3.1, 1.8, 2.9]
    wave = bursts(on, seed=4)
    path = tmp_path / "long.wav"
    sf.write(path, wave, RATE, subtype="FLOAT")
    spec = ChunkSpec(chunk_seconds=chunk_seconds, overlap_seconds=1.0)
    transcriber = Transcriber.from_checkpoint(model, "cpu", chunk=spec)
    result = transcriber.transcribe([path])[0]
    assert result.duration == pytest.approx(len(wave) / RATE)

    chunks = list(split_stream(iter([wave]), RATE, spec))
    assert len(chunks) > 1
    expected: list[Word] = []
    for chunk in chunks:
        [(_, words)] = transcriber._decode([torch.from_numpy(chunk.wave)])
        expected += keep_words(words, chunk)
    assert len(expected) >= 10  # a varied random model: many words to stitch
    assert [w.word for w in result.words] == [w.word for w in expected]
    assert [w.start for w in result.words] == pytest.approx([w.start for w in expected])
    assert result.text == " ".join(w.word for w in expected)
    starts = [w.start for w in result.words]
    assert starts == sorted(starts) and all(w.end <= result.duration for w in result.words)


def test_chunk_spec_validation():
    with pytest.raises(ValueError, match="chunk_seconds"):
        ChunkSpec(chunk_seconds=0.5)
    with pytest.raises(ValueError, match="overlap_seconds"):
        ChunkSpec(chunk_seconds=10, overlap_seconds=5)
    with pytest.raises(ValueError, match="overlap_seconds"):
        ChunkSpec(chunk_seconds=10, overlap_seconds=0.2)  # a word could span all of it
