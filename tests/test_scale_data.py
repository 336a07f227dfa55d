"""Data that outgrows memory: lazy manifests, tar shards and the feature cache."""

from __future__ import annotations

import json
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import compose_train, tiny_overrides

from asr.audio import AudioError, load_audio
from asr.checkpoint import list_checkpoints, load_checkpoint
from asr.data import SpeechDataset
from asr.feature_cache import FeatureCache, features_tag
from asr.features import FeatureSpec, LogMel
from asr.manifest import (
    ManifestError,
    ManifestIndex,
    durations_of,
    read_manifest,
    read_manifests,
    subset,
)
from asr.prepare import main as prepare_main
from asr.shards import shard_manifest, write_shards
from asr.train import Trainer, TrainingError, train


def _fields(utt) -> tuple:
    return (utt.audio_filepath, utt.duration, utt.text, utt.extra, utt.origin)


@pytest.fixture
def two_manifests(tmp_path: Path) -> list[Path]:
    """Two manifests with blank lines, CRLF endings and no final newline."""
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    rows = [
        {"audio_filepath": "a.wav", "duration": 1.0 + i / 8, "text": f"line {i}", "speaker": i}
        for i in range(7)
    ]
    first = tmp_path / "one.jsonl"
    first.write_bytes(
        b"\n".join(json.dumps(r).encode() for r in rows[:3]) + b"\n\n  \n"
        + json.dumps(rows[3]).encode() + b"\r\n"
    )  # fmt: skip
    second = tmp_path / "two.jsonl"
    second.write_bytes(b"\n".join(json.dumps(r).encode() for r in rows[4:]))
    return [first, second]


def test_manifest_index_reads_what_read_manifests_reads(two_manifests, tmp_path):
    eager = read_manifests(two_manifests)
    lazy = ManifestIndex(two_manifests)
    assert len(lazy) == len(eager) == 7
    assert [_fields(u) for u in lazy] == [_fields(u) for u in eager]
    assert lazy[-1].origin == f"{two_manifests[1]}:3"
    assert durations_of(lazy) == durations_of(eager) == [u.duration for u in eager]
    picked = subset(lazy, [5, 0, 3])
    assert isinstance(picked, ManifestIndex)
    assert [_fields(u) for u in picked] == [_fields(eager[i]) for i in (5, 0, 3)]
    assert [u.text for u in lazy[2:4]] == ["line 2", "line 3"]
    assert [u.text for u in subset(eager, [1])] == ["line 1"]
    with pytest.raises(IndexError):
        lazy[7]
    # spawned workers unpickle it and open the files themselves
    clone = pickle.loads(pickle.dumps(lazy))
    assert [_fields(u) for u in clone] == [_fields(u) for u in eager]


def test_manifest_index_after_fork_reads_its_own_file_offsets(two_manifests):
    lazy = ManifestIndex(two_manifests)
    assert lazy[6].text == "line 6"  # the parent's handle now sits at the end
    parent_handle = lazy._handle(1)
    pid = os.fork()
    if pid == 0:  # the child reads out of order while the parent does too
        ok = [lazy[i].text for i in (4, 0, 5)] == ["line 4", "line 0", "line 5"]
        os._exit(0 if ok and lazy._handle(1) is not parent_handle else 1)
    texts = [lazy[i].text for i in (1, 4)]
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert texts == ["line 1", "line 4"]


def test_manifest_index_gives_read_manifests_errors(two_manifests, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio_filepath": "a.wav", "duration": 1, "text": "x"}\n{"duration": 2}\n')
    for paths in ([bad], [two_manifests[0], bad]):
        with pytest.raises(ManifestError, match=f"{bad}:2: missing key"):
            ManifestIndex(paths)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ManifestError, match="no utterances"):
        ManifestIndex([empty])
    with pytest.raises(ManifestError, match="manifest not found"):
        ManifestIndex([tmp_path / "absent.jsonl"])
    with pytest.raises(TypeError, match="boolean mask"):
        ManifestIndex(two_manifests).select(np.ones(7, dtype=bool))
    # A manifest replaced after indexing is refused, not read at stale offsets.
    lazy = ManifestIndex(two_manifests)
    two_manifests[1].write_text(two_manifests[1].read_text().replace("line", "LINE"))
    assert lazy[0].text == "line 0"
    with pytest.raises(ManifestError, match=f"{two_manifests[1]}: manifest changed"):
        lazy[5]


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"audio_offset": 10}, "'audio_size' must be a byte count"),
        ({"audio_offset": -1, "audio_size": 5}, "'audio_offset' must be a byte count"),
        ({"audio_offset": "0", "audio_size": 5}, "'audio_offset' must be a byte count"),
        ({"audio_size": 5}, "'audio_offset' must be a byte count"),
    ],
)
def test_byte_range_keys_are_checked(tmp_path, extra, problem):
    (tmp_path / "a.tar").write_bytes(b"x" * 64)
    path = tmp_path / "m.jsonl"
    row = {"audio_filepath": "a.tar", "duration": 1.0, "text": "x", **extra}
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(ManifestError, match=f"{path}:1: {problem}"):
        read_manifest(path)


def test_audio_is_read_from_a_byte_range(tmp_path):
    wave = np.sin(np.arange(3 * 8000) / 7).astype(np.float32) * 0.5
    sf.write(tmp_path / "a.flac", wave, 8000)
    payload = (tmp_path / "a.flac").read_bytes()
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\0" * 1000 + payload + b"\1" * 500)
    whole = load_audio(tmp_path / "a.flac", 16000)
    part = load_audio(blob, 16000, byte_range=(1000, len(payload)))
    assert torch.equal(whole, part)
    # the header check reads the same bytes, then decoding starts from their beginning
    with pytest.raises(AudioError, match="audio is 3.0 s but the manifest says 0.5 s"):
        load_audio(blob, 16000, byte_range=(1000, len(payload)), expected_seconds=0.5)
    checked = load_audio(blob, 16000, byte_range=(1000, len(payload)), expected_seconds=3.0)
    assert torch.equal(checked, whole)
    with pytest.raises(AudioError, match=r"blob.bin \(bytes 1000\.\.1100\): cannot decode"):
        load_audio(blob, 16000, byte_range=(1000, 100))
    with pytest.raises(AudioError, match="file ends after"):
        load_audio(blob, 16000, byte_range=(1000, 10**7))


def test_shards_hold_the_audio_unchanged_in_webdataset_layout(tiny_corpus, tmp_path):
    utts = read_manifest(tiny_corpus / "train.jsonl")
    biggest = max(Path(u.audio_filepath).stat().st_size for u in utts)
    manifest = write_shards(utts, tmp_path / "shards", max_bytes=2 * biggest)
    shards = sorted((tmp_path / "shards").glob("shard-*.tar"))
    assert len(shards) >= 3  # about two clips a shard
    sharded = read_manifest(manifest)
    assert [(u.text, u.duration) for u in sharded] == [(u.text, u.duration) for u in utts]
    assert json.loads(manifest.read_text().splitlines()[0])["audio_filepath"] == shards[0].name
    for original, copy in zip(utts, sharded, strict=True):
        assert copy.byte_range is not None
        with open(copy.audio_filepath, "rb") as handle:
            handle.seek(copy.byte_range[0])
            assert handle.read(copy.byte_range[1]) == Path(original.audio_filepath).read_bytes()
    with tarfile.open(shards[0]) as tar:
        names = tar.getnames()
        row = json.load(tar.extractfile(names[1]))
    assert names[0].endswith(".flac") and names[1] == names[0].rsplit(".", 1)[0] + ".json"
    assert row["text"] == utts[0].text
    # Shards are never rewritten from shards, nor over the manifest they come from.
    with pytest.raises(ManifestError, match="already in a shard"):
        write_shards(sharded, tmp_path / "again")
    with pytest.raises(ManifestError, match="would overwrite it"):
        shard_manifest(manifest, manifest.parent)
    # A clip read from its shard gives the same features as the loose file.
    spec = LogMel(FeatureSpec())
    loose = SpeechDataset(utts, spec)
    packed = SpeechDataset(ManifestIndex([manifest]), spec)
    for i in range(len(utts)):
        assert torch.equal(loose[i]["input"], packed[i]["input"])


def test_prepare_shards_command(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "out"
    assert prepare_main(["shards", str(tiny_corpus / "train.jsonl"), str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "train.jsonl")
    assert len(list(out.glob("shard-*.tar"))) == 1
    original = read_manifest(tiny_corpus / "train.jsonl")
    assert len(read_manifest(out / "train.jsonl")) == len(original)
    assert prepare_main(["shards", str(tmp_path / "none.jsonl"), str(out)]) == 2
    assert "none.jsonl: manifest not found" in capsys.readouterr().err


def test_feature_cache_writes_then_serves_the_same_features(tiny_corpus, tmp_path):
    utts = read_manifest(tiny_corpus / "train.jsonl")
    for utt in utts:  # private copies: the test touches a file, the corpus is shared
        copy = tmp_path / Path(utt.audio_filepath).name
        copy.write_bytes(Path(utt.audio_filepath).read_bytes())
        utt.audio_filepath = str(copy)
    features = LogMel(FeatureSpec())
    cache = FeatureCache(tmp_path / "cache", features)
    plain = SpeechDataset(utts, features)
    cached = SpeechDataset(utts, features, cache=cache)
    first = [cached[i]["input"] for i in range(len(utts))]
    assert (cache.hits, cache.misses) == (0, len(utts))
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == len(utts)
    second = [cached[i]["input"] for i in range(len(utts))]
    assert (cache.hits, cache.misses) == (len(utts), len(utts))
    for i in range(len(utts)):
        expected = plain[i]["input"]
        assert torch.equal(first[i], expected) and torch.equal(second[i], expected)
    # A damaged entry is recomputed, a touched audio file misses, other settings or
    # statistics use another folder.
    for damage in (b"not numpy", b""):  # b"": a rename that outran its data in a crash
        cache.path(utts[0]).write_bytes(damage)
        assert torch.equal(cached[0]["input"], first[0])
    os.utime(utts[1].audio_filepath, ns=(1, 1))
    before = cache.misses
    cached[1]
    assert cache.misses == before + 1
    other = LogMel(FeatureSpec(n_mels=40))
    assert features_tag(other) != features_tag(features)
    scaled = LogMel(FeatureSpec())
    scaled.set_global_stats(torch.zeros(80), torch.full((80,), 2.0))
    assert features_tag(scaled) != features_tag(features)
    # Augmented clips never go through the cache.
    from asr.augment import WaveAugmentSpec

    noisy = SpeechDataset(utts, features, augment=WaveAugmentSpec(gain_db=3.0), cache=cache)
    assert noisy.cache is None


def _final_weights(run: Path) -> dict:
    return load_checkpoint(list_checkpoints(run)[-1])["model"]


@pytest.mark.slow
def test_training_on_lazy_sharded_cached_data_gives_the_same_model(tiny_corpus, tmp_path):
    """Loose files and an eager list, against tar shards, a lazy index and a feature cache
    (two epochs: the second reads the cache): the same batches, bit-identical weights."""
    manifest = write_shards(read_manifest(tiny_corpus / "train.jsonl"), tmp_path / "shards")
    common = {"train.epochs": 2, "train.eval_every": 100, "model.dropout": 0.0}
    train(compose_train(tiny_overrides(tiny_corpus, **common)), tmp_path / "plain")
    packed = tiny_overrides(
        tiny_corpus,
        **common,
        **{
            "data.train_manifests": f"[{manifest}]",
            "data.lazy_manifests": True,
            "data.feature_cache": tmp_path / "cache",
        },
    )
    train(compose_train(packed), tmp_path / "packed")
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 6 * 2  # train clips + dev
    a, b = _final_weights(tmp_path / "plain"), _final_weights(tmp_path / "packed")
    for name, tensor in a.items():
        assert torch.equal(tensor, b[name]), name


def test_lazy_weights_and_cache_placement(tiny_corpus, tmp_path):
    two = f"[{tiny_corpus / 'train.jsonl'},{tiny_corpus / 'dev.jsonl'}]"
    cfg = compose_train(
        tiny_overrides(
            tiny_corpus,
            **{
                "data.train_manifests": two,
                "data.train_weights": "[2.0,0.0]",
                "data.lazy_manifests": True,
            },
        )
    )
    trainer = Trainer(cfg, tmp_path)
    assert isinstance(trainer.train_utts, ManifestIndex)
    n = len(trainer.train_utts)
    drawn = [trainer.train_utts[i % n].origin for b in trainer.sampler for i in b]
    assert all(o.startswith(str(tiny_corpus / "train.jsonl")) for o in drawn)
    assert len(drawn) == 2 * 6 and len(set(drawn)) == 6
    cfg.data.feature_cache = str(tmp_path / "cache")
    cfg.data.feature_placement = "device"
    with pytest.raises(TrainingError, match="feature_cache needs features computed"):
        Trainer(cfg, tmp_path / "device")


def test_global_statistics_follow_the_sampling_weights(tiny_corpus, tmp_path):
    """Global statistics come from the clips training draws: a manifest of weight 0 never
    counts, and without weights the clips are spread over all manifests, not the first."""
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    rows = []
    for utt in read_manifest(tiny_corpus / "train.jsonl"):
        wave, rate = sf.read(utt.audio_filepath, dtype="float32")
        path = quiet / Path(utt.audio_filepath).name
        sf.write(path, wave / 4, rate)  # power / 16: log-mel lower by ln 16 (silence stays)
        rows.append({"audio_filepath": str(path), "duration": utt.duration, "text": utt.text})
    from asr.manifest import write_manifest

    write_manifest(quiet / "train.jsonl", rows)
    two = f"[{tiny_corpus / 'train.jsonl'},{quiet / 'train.jsonl'}]"

    def mean_level(name: str, **extra) -> float:
        overrides = {"features.normalize": "global", "data.train_manifests": two, **extra}
        trainer = Trainer(compose_train(tiny_overrides(tiny_corpus, **overrides)), tmp_path / name)
        return float(trainer.features.mean.mean())

    loud = mean_level("loud", **{"data.train_weights": "[1.0,0.0]"})
    soft = mean_level("soft", **{"data.train_weights": "[0.0,1.0]"})
    assert 1.0 < loud - soft <= np.log(16) + 1e-3  # floored silent frames do not move
    both = mean_level("both", **{"data.stats_utterances": 2})  # the first and the last clip
    assert soft + 0.5 < both < loud - 0.5
