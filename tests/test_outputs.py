"""Tests for asr.outputs (txt/json/srt/vtt/tsv), asr-transcribe's files and folders, and word
timestamps on the synthetic demo audio (with a trained model, see test_demo_word_times)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.cli import transcribe_main
from asr.decoding import Word
from asr.outputs import (
    FORMATS,
    MAX_CHARS,
    make_cues,
    output_names,
    parse_formats,
    to_json,
    to_srt,
    to_tsv,
    to_txt,
    to_vtt,
)
from asr.transcribe import Transcriber, Transcript, collect_audio

srt = pytest.importorskip("srt")
webvtt = pytest.importorskip("webvtt")

WORDS = [
    Word("the", 0.5, 0.7, 0.9),
    Word("red", 0.8, 1.1, 0.75),
    Word("box", 1.2, 1.6, 0.5),
    Word("opens", 3.0, 3.5, 0.99),  # after a 1.4 s pause: a new cue
]
SAMPLE = Transcript("a.wav", "the red box opens", 4.0, WORDS, -3.25, [("the red fox opens", -4.5)])


def test_txt_and_json():
    assert to_txt(SAMPLE) == "the red box opens\n"
    data = json.loads(to_json(SAMPLE))
    assert data["text"] == "the red box opens" and data["duration"] == 4.0
    assert data["words"][1] == {"word": "red", "start": 0.8, "end": 1.1, "confidence": 0.75}
    assert data["alternatives"] == [{"text": "the red fox opens", "score": -4.5}]


def test_srt_parses_with_a_real_parser():
    subtitles = list(srt.parse(to_srt(SAMPLE)))
    assert [s.content for s in subtitles] == ["the red box", "opens"]
    assert [s.index for s in subtitles] == [1, 2]
    assert subtitles[0].start.total_seconds() == 0.5
    assert subtitles[0].end.total_seconds() == 1.6
    assert subtitles[1].start.total_seconds() == 3.0


def test_vtt_parses_with_a_real_parser():
    captions = webvtt.from_string(to_vtt(SAMPLE)).captions
    assert [c.text for c in captions] == ["the red box", "opens"]
    assert [(c.start, c.end) for c in captions] == [
        ("00:00:00.500", "00:00:01.600"),
        ("00:00:03.000", "00:00:03.500"),
    ]


def test_tsv_rows_in_milliseconds():
    assert to_tsv(SAMPLE).splitlines() == [
        "start\tend\ttext",
        "500\t1600\tthe red box",
        "3000\t3500\topens",
    ]


def test_cues_split_long_lines_and_long_spans():
    words = [Word(f"word{i:02d}", i * 0.5, i * 0.5 + 0.4, 1.0) for i in range(30)]
    cues = make_cues(Transcript("x", "", 15.0, words))
    assert all(len(c.text) <= MAX_CHARS and c.end - c.start <= 6.0 for c in cues)
    assert " ".join(c.text for c in cues) == " ".join(w.word for w in words)
    hours = Transcript("x", "late", 4000.0, [Word("late", 3725.0625, 3726.5, 1.0)])
    (sub,) = srt.parse(to_srt(hours))
    assert sub.start.total_seconds() == pytest.approx(3725.062, abs=1e-3)
    assert "01:02:05.062 --> 01:02:06.500" in to_vtt(hours)


def test_empty_transcripts_give_valid_empty_files():
    empty = Transcript("x", "", 1.0)
    assert list(srt.parse(to_srt(empty))) == []
    assert webvtt.from_string(to_vtt(empty)).captions == []
    assert to_tsv(empty) == "start\tend\ttext\n"
    # text without word times: one cue over the whole file
    (cue,) = make_cues(Transcript("x", "hello", 2.0))
    assert (cue.start, cue.end, cue.text) == (0.0, 2.0, "hello")


def test_parse_formats_and_output_names(tmp_path):
    assert parse_formats("all") == list(FORMATS)
    assert parse_formats("srt,json") == ["srt", "json"]
    with pytest.raises(ValueError, match="unknown output format"):
        parse_formats("docx")
    names = output_names(
        [tmp_path / "d" / "sub" / "a.wav", tmp_path / "b.flac"], [tmp_path / "d", None]
    )
    assert names == ["sub/a", "b"]
    with pytest.raises(ValueError, match="same output files"):
        output_names([tmp_path / "x" / "a.wav", tmp_path / "y" / "a.flac"], [None, None])


def test_collect_audio_recurses_and_sorts(tmp_path):
    for name in ["z/b.wav", "a.flac", "z/deep/c.mp3", "notes.txt"]:
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"")
    paths, roots = collect_audio([tmp_path / "in"])
    assert [p.relative_to(tmp_path / "in").as_posix() for p in paths] == [
        "a.flac",
        "z/b.wav",
        "z/deep/c.mp3",
    ]
    assert roots == [tmp_path / "in"] * 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        collect_audio([tmp_path / "empty"])
    with pytest.raises(ValueError, match="file not found"):
        collect_audio([tmp_path / "nope.wav"])


# --- asr-transcribe end to end, with an untrained tiny model -------------------------------
@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from asr.checkpoint import save_checkpoint
    from asr.features import FeatureSpec
    from asr.model import CTCModel, ModelDims
    from asr.text import CharTokenizer

    tokenizer = CharTokenizer.from_texts(["a b c"])
    dims = ModelDims(vocab_size=len(tokenizer), conv_channels=8, hidden_size=8, num_layers=1)
    torch.manual_seed(0)
    model = CTCModel(dims)
    with torch.no_grad():  # make "a" win the middle frames so that there are words to time
        model.head.bias[tokenizer.encode("a")[0]] = 3.0
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    state = {
        "model_dims": dims.to_dict(),
        "model": model.state_dict(),
        "features": FeatureSpec().to_dict(),
        "tokenizer": tokenizer.to_dict(),
    }
    save_checkpoint(path, state)
    return path


def _wav(path: Path, seconds: float, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = np.random.default_rng(seed).normal(0, 0.1, int(16000 * seconds)).astype(np.float32)
    sf.write(path, wave, 16000)
    return path


def test_transcribe_folder_to_all_formats(tiny_checkpoint, tmp_path, capsys):
    _wav(tmp_path / "in" / "one.wav", 0.6)
    _wav(tmp_path / "in" / "sub" / "two.flac", 1.1, seed=1)
    out = tmp_path / "out"
    transcribe_main([str(tmp_path / "in"), "-m", str(tiny_checkpoint), "-o", str(out), "--quiet"])
    assert "2 transcript(s) written" in capsys.readouterr().out
    for name in ["one", "sub/two"]:
        assert sorted(p.suffix for p in out.glob(f"{name}.*")) == sorted(f".{f}" for f in FORMATS)
        data = json.loads((out / f"{name}.json").read_text())
        assert data["text"] == (out / f"{name}.txt").read_text().strip()
        assert data["duration"] == (0.6 if name == "one" else 1.1)
        for word in data["words"]:
            assert 0.0 <= word["start"] < word["end"] <= data["duration"]
            assert 0.0 <= word["confidence"] <= 1.0
        assert [w["word"] for w in data["words"]] == data["text"].split()
        subtitles = list(srt.parse((out / f"{name}.srt").read_text()))
        assert " ".join(s.content for s in subtitles) == data["text"]
        webvtt.read(str(out / f"{name}.vtt"))


def test_transcribe_prints_one_format_and_skips_bad_files(tiny_checkpoint, tmp_path, capsys):
    good = _wav(tmp_path / "good.wav", 0.5)
    transcribe_main([str(good), "-m", str(tiny_checkpoint), "-f", "json"])
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"text", "words", "duration"}
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    with pytest.raises(SystemExit) as stop:
        transcribe_main([str(good), str(tmp_path / "bad.wav"), "-m", str(tiny_checkpoint)])
    assert stop.value.code == 1
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{good}\t")
    assert "skipped" in captured.err and "bad.wav" in captured.err
    with pytest.raises(SystemExit) as stop:
        transcribe_main([str(good), "-m", str(tiny_checkpoint), "-f", "all"])
    assert stop.value.code == 2 and "-o OUTPUT_DIR" in capsys.readouterr().err


def test_transcriber_words_with_beam(tiny_checkpoint, tmp_path):
    from asr.config import DecodingConfig

    files = [_wav(tmp_path / f"{i}.wav", 0.4 + 0.3 * i, seed=i) for i in range(3)]
    greedy = Transcriber.from_checkpoint(tiny_checkpoint, "cpu").transcribe(files)
    beam = Transcriber.from_checkpoint(
        tiny_checkpoint, "cpu", DecodingConfig(method="beam", beam_size=4, nbest=2)
    ).transcribe(files)
    for g, b in zip(greedy, beam, strict=True):
        assert [w.word for w in b.words] == b.text.split()
        assert b.duration == g.duration
        assert all(s < b.score for _, s in b.alternatives)


# --- word times on the demo corpus, with a trained model -----------------------------------
@pytest.mark.skipif(
    not os.environ.get("ASR_TEST_DEMO_MODEL"),
    reason="set ASR_TEST_DEMO_MODEL to a checkpoint trained on the demo corpus",
)
def test_demo_word_times_match_the_manifest():
    """Word starts/ends against espeak-ng's word events on the demo dev set."""
    from asr.demo import default_demo_dir
    from asr.manifest import read_manifest

    manifest = default_demo_dir() / "dev.jsonl"
    if not manifest.is_file():
        pytest.skip(f"demo corpus not built: {manifest}")
    utterances = read_manifest(manifest)[:60]
    transcriber = Transcriber.from_checkpoint(os.environ["ASR_TEST_DEMO_MODEL"], "cpu")
    results = transcriber.transcribe([u.audio_filepath for u in utterances])
    starts, ends, matched = [], [], 0
    for utt, result in zip(utterances, results, strict=True):
        reference = utt.extra["words"]
        if [w.word for w in result.words] != [w[0] for w in reference]:
            continue  # timing is only comparable word for word
        matched += 1
        starts += [abs(w.start - r[1]) for w, r in zip(result.words, reference, strict=True)]
        ends += [abs(w.end - r[2]) for w, r in zip(result.words, reference, strict=True)]
    assert matched >= len(utterances) // 2
    print(
        f"\n{matched} utterances, {len(starts)} words: mean |start error| "
        f"{np.mean(starts):.3f} s (median {np.median(starts):.3f}), mean |end error| "
        f"{np.mean(ends):.3f} s (median {np.median(ends):.3f})"
    )
    assert np.median(starts) < 0.08 and np.median(ends) < 0.08


def test_alignment_of_a_long_utterance():
    # More than 63 tokens means more than 127 CTC states: the back-pointer walk must not
    # stay in the int8 of its table (it overflowed under NumPy 2's promotion rules).
    from asr.decoding import ctc_align

    tokens = [1 + (i % 3) for i in range(100)]
    frames = 2 * len(tokens) + 10
    log_probs = torch.full((frames, 4), -10.0)
    for i, token in enumerate(tokens):  # token i on frame 2i, a blank on 2i+1
        log_probs[2 * i, token] = 0.0
        log_probs[2 * i + 1, 0] = 0.0
    log_probs[2 * len(tokens) :, 0] = 0.0
    path = ctc_align(log_probs, tokens, blank=0)
    assert [int(p) for p in path[: 2 * len(tokens) : 2]] == list(range(len(tokens)))
    assert (path[1 : 2 * len(tokens) : 2] == -1).all() and (path[2 * len(tokens) :] == -1).all()
