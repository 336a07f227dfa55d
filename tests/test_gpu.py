"""CUDA paths: features, model, mixed-precision training, transcription and NCCL DDP on a GPU.

All are marked ``requires_cuda`` and skip on machines without one (this project's CI has
none): they are what to run first on a GPU machine (``pytest -m requires_cuda``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import REPO, compose_train, random_checkpoint, tiny_overrides

from asr.features import FeatureSpec, LogMel
from asr.model import CTCModel, ModelDims

pytestmark = [
    pytest.mark.requires_cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]


def test_batched_features_on_the_gpu_match_the_cpu():
    torch.manual_seed(0)
    waves = torch.randn(4, 48000) * 0.1
    lengths = torch.tensor([48000, 31000, 16000, 9000])
    extract = LogMel(FeatureSpec())
    want, want_n = extract(waves, lengths)
    got, got_n = extract.to("cuda")(waves.cuda(), lengths.cuda())
    assert torch.equal(got_n.cpu(), want_n)
    for b, n in enumerate(want_n.tolist()):
        assert (got[b, :n].cpu() - want[b, :n]).abs().max() < 1e-3


def test_model_on_the_gpu_matches_the_cpu_and_stays_padding_exact():
    torch.manual_seed(0)
    model = CTCModel(ModelDims(vocab_size=29, hidden_size=64, conv_channels=64)).eval()
    feats, lengths = torch.randn(3, 300, 80), torch.tensor([300, 170, 41])
    with torch.no_grad():
        want, _ = model(feats, lengths)
        gpu = model.to("cuda")
        got, got_n = gpu(feats.cuda(), lengths.cuda())
        alone, _ = gpu(feats[2:, :41].cuda(), lengths[2:].cuda())
    assert (got.cpu() - want).abs()[0].max() < 1e-4
    n = int(got_n[2])
    assert (alone[0, :n] - got[2, :n]).abs().max() < 1e-4


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_steps(tiny_corpus: Path, tmp_path: Path, precision: str):
    from asr.train import Trainer

    cfg = compose_train(
        tiny_overrides(
            tiny_corpus,
            **{"train.device": "cuda", "train.precision": precision, "train.max_steps": 8},
        )
    )
    trainer = Trainer(cfg, tmp_path)
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    summary = trainer.run()
    assert summary["steps"] == 8 and summary["non_finite_steps_skipped"] <= 2
    after = trainer.model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_transcription_on_the_gpu_matches_the_cpu(tmp_path: Path):
    from asr.transcribe import Transcriber

    model = random_checkpoint(tmp_path / "m.pt", scale=4.0)
    audio = tmp_path / "a.wav"
    sf.write(audio, 0.3 * np.random.default_rng(0).standard_normal(40000), 16000)
    cpu = Transcriber.from_checkpoint(model, "cpu").transcribe([audio])[0]
    gpu = Transcriber.from_checkpoint(model, "cuda").transcribe([audio])[0]
    assert gpu.text == cpu.text


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL DDP needs 2 GPUs")
def test_ddp_over_nccl_ends_with_identical_weights(tiny_corpus: Path, tmp_path: Path):
    args = tiny_overrides(tiny_corpus, **{"train.device": "cuda", "train.max_steps": 6})
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "asr.train",
         *args, f"hydra.run.dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["weights_identical_on_all_processes"]
