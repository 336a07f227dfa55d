"""TorchScript and ONNX export: same log-probs as the checkpoint, and transcription from them."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import REPO

from asr.checkpoint import CheckpointError, build_from_checkpoint, save_checkpoint
from asr.export import build_from_export, export_model
from asr.features import FeatureSpec
from asr.model import CTCModel, ModelDims
from asr.text import CharTokenizer

# float32 LSTMs in another runtime: per-element differences of a few 1e-6 measured, from
# differently ordered sums; 1e-4 on log-probs leaves room and still catches a wrong weight
TOLERANCE = 1e-4


def make_checkpoint(path: Path, proj_size: int = 0, front_end: str = "conv1d") -> Path:
    """A small model in the default layout (2x subsampling) with global feature
    statistics, weights scaled up so the outputs vary from frame to frame."""
    torch.manual_seed(1)
    tokenizer = CharTokenizer.from_texts(["the quick brown fox jumps over a lazy dog"])
    dims = ModelDims(
        vocab_size=len(tokenizer),
        conv_channels=32,
        hidden_size=24,
        num_layers=2,
        proj_size=proj_size,
        front_end=front_end,
        conv2d_channels=4,
    )
    model = CTCModel(dims)
    save_checkpoint(
        path,
        {
            "model_dims": dims.to_dict(),
            "model": {k: v * 3 for k, v in model.state_dict().items()},
            "features": FeatureSpec(normalize="global").to_dict(),
            "feature_stats": {"mean": torch.randn(80), "std": torch.rand(80) + 0.5},
            "tokenizer": tokenizer.to_dict(),
        },
    )
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("export") / "model.pt")


def test_torchscript_exports_projected_lstms_onnx_says_it_cannot(tmp_path: Path):
    projected = make_checkpoint(tmp_path / "proj.pt", proj_size=16)
    with pytest.raises(ValueError, match="proj.pt: ONNX cannot express LSTMs with projections"):
        export_model(projected, tmp_path / "proj.onnx")
    loaded = build_from_export(export_model(projected, tmp_path / "proj.ts"))
    original = build_from_checkpoint(projected)
    feats, n = torch.randn(2, 150, 80), torch.tensor([150, 77])
    with torch.no_grad():
        diff = (loaded.model(feats, n)[0][1, :39] - original.model(feats, n)[0][1, :39]).abs()
    assert diff.max().item() <= TOLERANCE


@pytest.mark.parametrize("suffix", ["ts", "onnx"])
def test_conv2d_front_end_exports(tmp_path: Path, suffix: str):
    checkpoint = make_checkpoint(tmp_path / "c2d.pt", front_end="conv2d")
    loaded = build_from_export(export_model(checkpoint, tmp_path / f"c2d.{suffix}"))
    original = build_from_checkpoint(checkpoint)
    assert_same_log_probs(original, loaded, torch.randn(3, 250, 80), [250, 101, 9])


def assert_same_log_probs(original, loaded, feats: torch.Tensor, lengths: list[int]) -> None:
    """The exported model's valid frames match the checkpoint's within TOLERANCE."""
    n = torch.tensor(lengths)
    with torch.no_grad():
        want, want_n = original.model(feats, n)
        got, got_n = loaded.model(feats, n)
    assert torch.equal(got_n, want_n)
    for b, frames in enumerate(want_n.tolist()):
        diff = (got[b, :frames] - want[b, :frames]).abs().max().item()
        assert diff <= TOLERANCE, (lengths, b, diff)


@pytest.fixture(scope="module", params=["ts", "onnx"])
def exported(request, checkpoint: Path) -> Path:
    return export_model(checkpoint, checkpoint.with_suffix("." + request.param))


def test_exported_log_probs_match_the_checkpoint(checkpoint: Path, exported: Path):
    original = build_from_checkpoint(checkpoint)
    loaded = build_from_export(exported)
    assert torch.equal(loaded.features.mean, original.features.mean)
    generator = torch.Generator().manual_seed(5)
    # batch sizes and lengths unlike the export's example (2 x 200 frames)
    for lengths in ([523], [90, 311, 17], [64, 64, 64, 64]):
        feats = torch.randn(len(lengths), max(lengths), 80, generator=generator)
        assert_same_log_probs(original, loaded, feats, lengths)


def test_transcription_from_the_exported_model(checkpoint: Path, exported: Path, tmp_path):
    from asr.transcribe import Transcriber

    rng = np.random.default_rng(0)
    files = []
    for i, seconds in enumerate([1.3, 2.7, 0.6]):
        files.append(tmp_path / f"{i}.wav")
        sf.write(files[-1], (0.3 * rng.standard_normal(int(seconds * 16000))), 16000)
    want = Transcriber.from_checkpoint(checkpoint, "cpu").transcribe(files)
    got = Transcriber.from_checkpoint(exported, "cpu").transcribe(files)
    assert any(r.words for r in want)
    for a, b in zip(want, got, strict=True):
        assert a.text == b.text
        assert [w.start for w in a.words] == [w.start for w in b.words]
        assert [w.confidence for w in a.words] == pytest.approx(
            [w.confidence for w in b.words], abs=1e-4
        )


def test_export_errors(checkpoint: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="torchscript .* or onnx"):
        export_model(checkpoint, tmp_path / "model.bin")
    with pytest.raises(CheckpointError, match="missing.onnx: file not found"):
        build_from_export(tmp_path / "missing.onnx")
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(CheckpointError, match="damaged.onnx"):
        build_from_export(damaged)
    foreign = tmp_path / "foreign.ts"
    with warnings.catch_warnings():  # TorchScript's deprecation notice
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(foreign))
    with pytest.raises(CheckpointError, match="foreign.ts: no asr metadata"):
        build_from_export(foreign)


def test_asr_export_and_transcribe_commands(checkpoint: Path, tmp_path: Path):
    import subprocess
    import sys

    audio = tmp_path / "a.wav"
    sf.write(audio, 0.3 * np.random.default_rng(1).standard_normal(20000), 16000)
    out = tmp_path / "m.onnx"
    bin_dir = Path(sys.executable).parent
    done = subprocess.run(
        [bin_dir / "asr-export", checkpoint, out], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    assert out.is_file() and "MB" in done.stdout
    texts = [
        subprocess.run(
            [bin_dir / "asr-transcribe", audio, "-m", model, "--quiet"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout  # fmt: skip
        for model in (checkpoint, out)
    ]
    assert texts[0] == texts[1]


def test_label_priors_travel_into_the_export(tmp_path: Path):
    from asr.checkpoint import store_log_priors

    path = make_checkpoint(tmp_path / "model.pt")
    vocab = len(build_from_checkpoint(path).tokenizer)
    priors = [-1.0 - 0.1 * i for i in range(vocab)]
    store_log_priors(path, priors)
    export_model(path, tmp_path / "model.ts")
    assert build_from_export(tmp_path / "model.ts").log_priors == pytest.approx(priors)
    export_model(make_checkpoint(tmp_path / "plain.pt"), tmp_path / "plain.ts")
    assert build_from_export(tmp_path / "plain.ts").log_priors is None
