"""Tests for asr.manifest: JSONL round trip, path resolution and line-precise errors."""

import json
from pathlib import Path

import pytest

from asr.manifest import ManifestError, Utterance, read_manifest, read_manifests, write_manifest


@pytest.fixture
def corpus(tmp_path):
    """tmp/data/manifest.jsonl with audio in tmp/data/audio/."""
    folder = tmp_path / "data"
    audio = folder / "audio"
    audio.mkdir(parents=True)
    for name in ("a.wav", "b.flac", "c.wav"):
        (audio / name).write_bytes(b"RIFF")  # content is never decoded here
    return folder


def write_lines(path: Path, lines) -> Path:
    data = b"".join(line if isinstance(line, bytes) else line.encode() for line in lines)
    path.write_bytes(data)
    return path


def entry(audio="audio/a.wav", duration=1.5, text="hello world", **extra):
    return json.dumps({"audio_filepath": audio, "duration": duration, "text": text, **extra})


def test_round_trip_keeps_extra_keys_and_resolves_paths(corpus):
    manifest = corpus / "train.jsonl"
    rows = [
        {"audio_filepath": "audio/a.wav", "duration": 1.25, "text": "one", "speaker": "s1"},
        {
            "audio_filepath": "audio/b.flac",
            "duration": 2,
            "text": "caf\u00e9 two",
            "prompt": "p7",
            "tags": ["x", 1],
        },
    ]
    assert write_manifest(manifest, rows) == 2
    utts = read_manifest(manifest)
    assert [u.text for u in utts] == ["one", "caf\u00e9 two"]
    assert [u.duration for u in utts] == [1.25, 2.0]
    assert utts[0].extra == {"speaker": "s1"}
    assert utts[1].extra == {"prompt": "p7", "tags": ["x", 1]}
    assert utts[0].speaker == "s1"
    assert utts[1].speaker is None
    assert Path(utts[0].audio_filepath) == (corpus / "audio" / "a.wav").resolve()
    assert Path(utts[1].audio_filepath) == (corpus / "audio" / "b.flac").resolve()
    assert utts[0].origin == f"{manifest}:1"
    assert utts[1].origin == f"{manifest}:2"
    # Non-ASCII text is written as UTF-8, not escaped.
    assert "caf\u00e9" in manifest.read_text(encoding="utf-8")

    # Writing the utterances back (their paths are now absolute) stores relative paths again
    # and keeps every extra key.
    again = corpus / "again.jsonl"
    write_manifest(again, utts)
    stored = [json.loads(line) for line in again.read_text(encoding="utf-8").splitlines()]
    assert stored == [
        {"audio_filepath": "audio/a.wav", "duration": 1.25, "text": "one", "speaker": "s1"},
        {
            "audio_filepath": "audio/b.flac",
            "duration": 2.0,
            "text": "caf\u00e9 two",
            "prompt": "p7",
            "tags": ["x", 1],
        },
    ]
    assert [(u.audio_filepath, u.duration, u.text, u.extra) for u in read_manifest(again)] == [
        (u.audio_filepath, u.duration, u.text, u.extra) for u in utts
    ]


def test_relative_paths_resolve_against_manifest_folder_not_cwd(corpus, tmp_path, monkeypatch):
    write_lines(corpus / "m.jsonl", [entry("audio/c.wav") + "\n"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (utt,) = read_manifest(Path("..") / "data" / "m.jsonl")
    assert Path(utt.audio_filepath) == (corpus / "audio" / "c.wav").resolve()


def test_absolute_paths_are_accepted(corpus, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    absolute = (corpus / "audio" / "b.flac").resolve()
    manifest = write_lines(other / "abs.jsonl", [entry(str(absolute)) + "\n"])
    (utt,) = read_manifest(manifest)
    assert Path(utt.audio_filepath) == absolute


def test_write_makes_absolute_paths_relative(corpus):
    manifest = corpus / "w.jsonl"
    absolute = str((corpus / "audio" / "a.wav").resolve())
    write_manifest(manifest, [{"audio_filepath": absolute, "duration": 1.23456789, "text": "x"}])
    (row,) = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert row["audio_filepath"] == str(Path("audio") / "a.wav")
    assert row["duration"] == 1.2346  # rounded to 0.1 ms


def test_utterance_objects_are_written(corpus):
    manifest = corpus / "u.jsonl"
    utt = Utterance(str(corpus / "audio" / "a.wav"), 0.5, "hi", {"speaker": 3})
    write_manifest(manifest, [utt])
    (back,) = read_manifest(manifest)
    assert (back.duration, back.text, back.extra, back.speaker) == (0.5, "hi", {"speaker": 3}, "3")


def test_blank_lines_are_ignored_and_line_numbers_count_them(corpus):
    manifest = write_lines(
        corpus / "blank.jsonl",
        ["\n", entry() + "\n", "   \n", "\n", entry("audio/b.flac", text="two") + "\n", "\n"],
    )
    utts = read_manifest(manifest)
    assert [u.text for u in utts] == ["hello world", "two"]
    assert [u.origin for u in utts] == [f"{manifest}:2", f"{manifest}:5"]


def test_last_line_without_newline_and_crlf(corpus):
    manifest = write_lines(corpus / "crlf.jsonl", [entry() + "\r\n", entry(text="last")])
    assert [u.text for u in read_manifest(manifest)] == ["hello world", "last"]


def test_read_manifests_concatenates(corpus):
    one = write_lines(corpus / "one.jsonl", [entry(text="1") + "\n"])
    two = write_lines(corpus / "two.jsonl", [entry(text="2") + "\n", entry(text="3") + "\n"])
    assert [u.text for u in read_manifests([one, two])] == ["1", "2", "3"]


# ------------------------------------------------------------------ errors

BAD_LINES = [
    ("bad_json", '{"audio_filepath": "audio/a.wav", "duration": 1.0,', "bad JSON"),
    ("not_object", '["audio/a.wav", 1.0, "text"]', "expected a JSON object, got list"),
    ("not_object_str", '"just a string"', "expected a JSON object, got str"),
    ("missing_key", json.dumps({"audio_filepath": "audio/a.wav", "text": "x"}), "duration"),
    ("missing_text", json.dumps({"audio_filepath": "audio/a.wav", "duration": 1}), "text"),
    ("duration_string", entry(duration="1.5"), "'duration' must be a number"),
    ("duration_bool", entry(duration=True), "'duration' must be a number"),
    ("duration_null", entry(duration=None), "'duration' must be a number"),
    ("duration_negative", entry(duration=-1.0), "'duration' must be a positive number"),
    ("duration_zero", entry(duration=0), "'duration' must be a positive number"),
    ("duration_nan", entry().replace("1.5", "NaN"), "'duration' must be a positive number"),
    ("duration_inf", entry().replace("1.5", "Infinity"), "'duration' must be a positive number"),
    ("text_not_string", entry(text=42), "'text' must be a string"),
    ("audio_empty", entry(audio=""), "'audio_filepath' must be a non-empty string"),
    ("audio_not_string", entry(audio=7), "'audio_filepath' must be a non-empty string"),
    ("audio_missing", entry(audio="audio/nope.wav"), "audio file not found"),
    ("audio_is_dir", entry(audio="audio"), "audio path is a directory"),
]


@pytest.mark.parametrize(("name", "line", "problem"), BAD_LINES, ids=[b[0] for b in BAD_LINES])
def test_bad_line_names_file_line_and_problem(corpus, name, line, problem):
    manifest = write_lines(
        corpus / f"{name}.jsonl", [entry() + "\n", "\n", entry("audio/b.flac") + "\n", line + "\n"]
    )
    with pytest.raises(ManifestError) as info:
        read_manifest(manifest)
    message = str(info.value)
    assert f"{manifest}:4" in message
    assert problem in message


def test_non_utf8_bytes(corpus):
    manifest = write_lines(
        corpus / "latin1.jsonl",
        [
            entry() + "\n",
            b'{"audio_filepath": "audio/a.wav", "duration": 1.0, "text": "caf\xe9"}\n',
        ],
    )
    with pytest.raises(ManifestError) as info:
        read_manifest(manifest)
    assert f"{manifest}:2" in str(info.value)
    assert "UTF-8" in str(info.value)


def test_missing_audio_is_accepted_without_check_files(corpus):
    manifest = write_lines(corpus / "nocheck.jsonl", [entry(audio="audio/nope.wav") + "\n"])
    (utt,) = read_manifest(manifest, check_files=False)
    assert Path(utt.audio_filepath) == (corpus / "audio" / "nope.wav").resolve()


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_manifest_is_an_error(corpus, content):
    manifest = corpus / "empty.jsonl"
    manifest.write_bytes(content)
    with pytest.raises(ManifestError, match="no utterances") as info:
        read_manifest(manifest)
    assert str(manifest) in str(info.value)


def test_missing_manifest(corpus):
    with pytest.raises(ManifestError, match="absent.jsonl"):
        read_manifest(corpus / "absent.jsonl")


def test_manifest_error_is_a_value_error():
    assert issubclass(ManifestError, ValueError)
