"""Tests for asr.checkpoint and asr.io_utils: round trip, refusal of bad files, atomicity."""

import os
import pathlib
import pickle

import numpy as np
import pytest
import torch

from asr.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    build_from_checkpoint,
    file_digest,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from asr.features import FeatureSpec, LogMel
from asr.io_utils import atomic_write, atomic_write_text
from asr.model import CTCModel, ModelDims
from asr.text import CharTokenizer

pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")


def make_parts(seed=0):
    torch.manual_seed(seed)
    tokenizer = CharTokenizer.from_texts(["abc d"])
    dims = ModelDims(
        n_mels=8,
        vocab_size=len(tokenizer),
        conv_channels=6,
        conv_kernel=3,
        subsampling=2,
        hidden_size=5,
        num_layers=1,
        proj_size=0,
        dropout=0.0,
    )
    spec = FeatureSpec(n_mels=8, normalize="global")
    features = LogMel(spec)
    features.set_global_stats(torch.linspace(-10, -3, 8), torch.linspace(1.0, 2.5, 8))
    return CTCModel(dims).eval(), features, tokenizer, dims, spec


def model_state(model, features, tokenizer, dims, spec):
    """The keys asr.train.Trainer.model_state() produces."""
    return {
        "model_dims": dims.to_dict(),
        "model": model.state_dict(),
        "features": spec.to_dict(),
        "feature_stats": {"mean": features.mean.cpu(), "std": features.std.cpu()},
        "tokenizer": tokenizer.to_dict(),
        "step": 123,
        "epoch": 4,
        "config": {"train": {"lr": 0.001, "epochs": 5}, "name": "tiny", "tags": [1, 2]},
    }


@pytest.fixture
def saved(tmp_path):
    parts = make_parts()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model_state(*parts))
    return path, parts


def test_round_trip_rebuilds_identical_model(saved):
    path, (model, features, tokenizer, dims, spec) = saved
    loaded = build_from_checkpoint(path)
    assert loaded.tokenizer.symbols == tokenizer.symbols
    assert loaded.model.dims == dims
    assert loaded.features.spec == spec
    assert not loaded.model.training and not loaded.features.training
    torch.testing.assert_close(loaded.features.mean, features.mean, atol=0, rtol=0)
    torch.testing.assert_close(loaded.features.std, features.std, atol=0, rtol=0)

    gen = torch.Generator().manual_seed(3)
    wave = torch.randn(2, 4000, generator=gen) * 0.1
    lengths = torch.tensor([4000, 2500])
    with torch.no_grad():
        feats, frames = features(wave, lengths)
        feats2, frames2 = loaded.features(wave, lengths)
        assert torch.equal(feats, feats2) and torch.equal(frames, frames2)
        expected, out_len = model(feats, frames)
        got, got_len = loaded.model(feats2, frames2)
    assert torch.equal(out_len, got_len)
    assert torch.equal(expected, got)

    state = loaded.state
    assert state["format"] == "asr-checkpoint"
    assert state["format_version"] == FORMAT_VERSION
    assert (state["step"], state["epoch"]) == (123, 4)
    assert state["config"] == {"train": {"lr": 0.001, "epochs": 5}, "name": "tiny", "tags": [1, 2]}


def test_resumable_extras_load_with_weights_only(tmp_path):
    model, features, tokenizer, dims, spec = make_parts()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(1, 9, 8), torch.tensor([9]))[0].sum().backward()
    optimizer.step()
    state = model_state(model, features, tokenizer, dims, spec)
    state.update(
        optimizer=optimizer.state_dict(),
        sampler={"epoch": 4, "consumed": 7, "seed": 0},
        rng={"torch": torch.get_rng_state()},
        best_wer=0.25,
    )
    path = tmp_path / "resume.pt"
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert loaded["sampler"] == {"epoch": 4, "consumed": 7, "seed": 0}
    assert loaded["best_wer"] == 0.25
    assert loaded["optimizer"]["state"].keys() == optimizer.state_dict()["state"].keys()


def test_truncated_file(saved):
    path, _ = saved
    data = path.read_bytes()
    cut = path.with_name("half_model.pt")
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="half_model.pt"):
        load_checkpoint(cut)
    with pytest.raises(CheckpointError, match="half_model.pt"):
        build_from_checkpoint(cut)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(CheckpointError, match="noise.pt"):
        load_checkpoint(path)


def test_many_random_byte_files(tmp_path):
    path = tmp_path / "noise.pt"
    escaped = []
    for seed in range(100):
        path.write_bytes(np.random.default_rng(seed).bytes(16))
        try:
            load_checkpoint(path)
        except CheckpointError:
            continue
        except Exception as exc:  # collecting what escapes is the point
            escaped.append((seed, type(exc).__name__))
    assert escaped == []


@pytest.mark.parametrize(
    "data",
    [
        b"s",  # SETITEM on an empty stack: IndexError
        b"h\xfc",  # BINGET of a missing memo entry: KeyError
        b"X\x02\x00\x00\x00\xff\xfe.",  # BINUNICODE with invalid UTF-8: UnicodeDecodeError
    ],
    ids=["IndexError", "KeyError", "UnicodeDecodeError"],
)
def test_garbage_that_trips_the_unpickler(tmp_path, data):
    path = tmp_path / "garbage.pt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_checkpoint(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pt"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="nowhere.pt"):
        load_checkpoint(tmp_path / "nowhere.pt")


def test_wrong_format_version(tmp_path):
    parts = make_parts()
    path = tmp_path / "future.pt"
    save_checkpoint(path, {**model_state(*parts), "format_version": FORMAT_VERSION + 41})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "future.pt" in message
    assert "version" in message and str(FORMAT_VERSION + 41) in message


def test_not_an_asr_checkpoint(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"weights": torch.ones(3)}, path)
    with pytest.raises(CheckpointError, match="plain.pt"):
        load_checkpoint(path)


def test_missing_parts(tmp_path):
    parts = make_parts()
    state = model_state(*parts)
    del state["tokenizer"]
    path = tmp_path / "partial.pt"
    save_checkpoint(path, state)
    with pytest.raises(CheckpointError, match="tokenizer"):
        load_checkpoint(path)


def test_inconsistent_vocabulary(tmp_path):
    parts = make_parts()
    state = model_state(*parts)
    state["tokenizer"] = CharTokenizer.from_texts(["abc dxyz"]).to_dict()
    path = tmp_path / "mismatch.pt"
    save_checkpoint(path, state)
    with pytest.raises(CheckpointError, match="mismatch.pt"):
        build_from_checkpoint(path)


class TouchOnLoad:
    """Unpickling this object would call ``marker.touch()``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


class ShellOnLoad:
    """Unpickling this object would run a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.parametrize("payload", [TouchOnLoad, ShellOnLoad])
@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_crafted_pickle_is_refused(tmp_path, payload, writer):
    marker = tmp_path / "MARKER"
    evil = tmp_path / "evil.pt"
    state = {"format": "asr-checkpoint", "format_version": FORMAT_VERSION, "x": payload(marker)}
    if writer == "torch.save":
        torch.save(state, evil)
    else:
        with open(evil, "wb") as handle:
            pickle.dump(state, handle)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError):
        build_from_checkpoint(evil)
    assert not marker.exists()


# ------------------------------------------------------------------ atomic writes


def test_atomic_write_replaces_on_success(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with atomic_write(target) as handle:
        handle.write("new")
        assert target.read_text() == "old"  # nothing visible until the block ends
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old checkpoint")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target, "wb") as handle:
        handle.write(b"half of a new")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_atomic_write_error_without_old_file(tmp_path):
    target = tmp_path / "sub" / "new.txt"
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as handle:
        handle.write("partial")
        raise KeyboardInterrupt
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_atomic_write_text(tmp_path):
    target = tmp_path / "deep" / "x.txt"
    atomic_write_text(target, "caf\u00e9\n")
    assert target.read_text(encoding="utf-8") == "caf\u00e9\n"


def test_save_checkpoint_failure_keeps_previous(saved, monkeypatch):
    path, parts = saved
    before = path.read_bytes()

    with pytest.raises(Exception):  # noqa: B017 - torch.save's error type is not ours
        save_checkpoint(path, {**model_state(*parts), "bad": lambda: None})  # unpicklable
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


# ------------------------------------------------------------------ pruning


def test_prune_keeps_newest_by_step_number(tmp_path):
    names = ["step_2.pt", "step_10.pt", "step_00000003.pt", "step_1.pt", "step_00000025.pt"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    others = ["best.pt", "step_final.pt", "last.pt", "step_7.txt"]
    for name in others:
        (tmp_path / name).write_bytes(b"y")
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step_1.pt",
        "step_2.pt",
        "step_00000003.pt",
        "step_10.pt",
        "step_00000025.pt",
    ]
    prune_checkpoints(tmp_path, keep=2)
    remaining = sorted(p.name for p in tmp_path.iterdir())
    assert remaining == sorted(["step_10.pt", "step_00000025.pt", *others])
    prune_checkpoints(tmp_path, keep=5)  # fewer than keep: nothing goes
    assert sorted(p.name for p in tmp_path.iterdir()) == remaining


def test_file_digest(tmp_path):
    import hashlib

    path = tmp_path / "blob.bin"
    data = np.random.default_rng(1).bytes(3 << 20)
    path.write_bytes(data)
    assert file_digest(path) == hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ permissions of written files

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


def mode_of(path) -> int:
    return os.stat(path).st_mode & 0o7777


@pytest.fixture
def umask():
    """Set a known umask for the test (``umask(value)``); the old one comes back after."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@posix_only
@pytest.mark.parametrize("mask", [0o022, 0o002, 0o027, 0o077], ids=oct)
def test_atomic_write_new_file_gets_umask_mode(tmp_path, umask, mask):
    umask(mask)
    atomic_write_text(tmp_path / "report.md", "text\n")
    with atomic_write(tmp_path / "model.pt", "wb") as handle:
        handle.write(b"bytes")
    with open(tmp_path / "plain.txt", "w") as handle:  # what the modes must match
        handle.write("text\n")
    assert mode_of(tmp_path / "report.md") == 0o666 & ~mask
    assert mode_of(tmp_path / "model.pt") == 0o666 & ~mask
    assert mode_of(tmp_path / "plain.txt") == 0o666 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "plain.txt", "report.md"]


@posix_only
@pytest.mark.parametrize("existing", [0o640, 0o600, 0o644, 0o444, 0o755], ids=oct)
def test_atomic_write_keeps_existing_mode(tmp_path, umask, existing):
    umask(0o022)  # a new file would be 0o644
    target = tmp_path / "manifest.jsonl"
    target.write_text("old\n")
    target.chmod(existing)
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert mode_of(target) == existing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.jsonl"]


@posix_only
def test_atomic_write_drops_set_user_id_of_existing_file(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "tool"
    target.write_text("old\n")
    target.chmod(0o4750)
    atomic_write_text(target, "new\n")
    assert mode_of(target) == 0o750


@posix_only
def test_atomic_write_failure_keeps_old_mode(tmp_path, umask):
    umask(0o077)
    target = tmp_path / "report.json"
    target.write_text("old")
    target.chmod(0o640)
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old" and mode_of(target) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


@posix_only
def test_save_checkpoint_is_readable_like_other_files(saved, umask):
    path, parts = saved
    umask(0o022)
    fresh = path.parent / "fresh.pt"
    save_checkpoint(fresh, model_state(*parts))
    assert mode_of(fresh) == 0o644


def test_average_checkpoints_means_the_weights(tmp_path):
    from asr.checkpoint import average_checkpoints
    from asr.cli import average_main

    paths = []
    for seed in range(3):
        paths.append(tmp_path / f"step_{seed:08d}.pt")
        save_checkpoint(paths[-1], model_state(*make_parts(seed)))
    average_main([str(tmp_path / "avg.pt"), str(tmp_path), "--last", "2"])
    averaged = build_from_checkpoint(tmp_path / "avg.pt")
    states = [load_checkpoint(p)["model"] for p in paths[1:]]
    for name, value in averaged.model.state_dict().items():
        assert torch.allclose(value, (states[0][name] + states[1][name]) / 2, atol=1e-7), name
    assert load_checkpoint(tmp_path / "avg.pt")["averaged_from"] == [str(p) for p in paths[1:]]

    other = tmp_path / "other.pt"
    state = model_state(*make_parts())
    state["tokenizer"] = CharTokenizer.from_texts(["xyz w"]).to_dict()
    save_checkpoint(other, state)
    with pytest.raises(CheckpointError, match="tokenizer differ"):
        average_checkpoints([paths[0], other], tmp_path / "bad.pt")
