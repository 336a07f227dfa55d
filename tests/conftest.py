"""Shared fixtures: a tiny synthetic corpus (espeak-ng, made offline) and config composition."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

import asr.cli  # noqa: F401  (registers the config schemas)
from asr.config import TrainRunConfig
from asr.manifest import read_manifest, write_manifest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ASR_SHARED_DATA", REPO.parent / "shared" / "data"))

# Six short utterances: enough for several batches per epoch, small enough to overfit fast.
TINY_TEXTS = ["go left", "stop now", "red box", "blue cat", "one two", "yes please"]


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A folder with train.jsonl (6 espeak-ng utterances, one voice) and the same as dev.jsonl."""
    synth = pytest.importorskip("asr.synth")
    import soundfile as sf
    import torch

    from asr.audio import resample

    folder = tmp_path_factory.mktemp("tiny_corpus")
    engine = synth.Espeak()
    rows = []
    for i, text in enumerate(TINY_TEXTS):
        try:
            result = engine.synthesize(text, voice="en-us", rate=160)
        except synth.SynthError as exc:
            pytest.skip(f"espeak-ng unavailable: {exc}")
        wave = resample(torch.from_numpy(result.audio), result.sample_rate, 16000).numpy()
        path = folder / "audio" / f"utt{i}.flac"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, wave, 16000)
        rows.append(
            {"audio_filepath": str(path), "duration": len(wave) / 16000, "text": text.upper()}
        )
    write_manifest(folder / "train.jsonl", rows)
    write_manifest(folder / "dev.jsonl", rows)
    return folder


def compose_train(overrides: list[str]) -> TrainRunConfig:
    """The real conf/train.yaml, shrunk by overrides, as the dataclass the library takes."""
    with initialize_config_module(config_module="asr.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    return OmegaConf.to_object(cfg)


def tiny_overrides(corpus: Path, **extra: object) -> list[str]:
    """Overrides that turn the real config into a seconds-long CPU run on ``corpus``."""
    base = {
        "model": "tiny",
        "data.train_manifests": f"[{corpus / 'train.jsonl'}]",
        "data.dev_manifests": f"[{corpus / 'dev.jsonl'}]",
        "data.num_workers": 0,
        "data.max_batch_seconds": 2.5,
        "train.threads": 1,
        "train.progress": False,
        "optim.warmup_steps": 5,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def shared_manifest(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"shared data not found: {path} (set ASR_SHARED_DATA)")
    read_manifest(path, check_files=False)
    return path


def random_checkpoint(path: Path, scale: float = 1.0) -> Path:
    """A small untrained model's checkpoint (vocabulary a-c): real computations, no meaning.
    ``scale`` multiplies every weight: at 4 the arg-max path varies from frame to frame."""
    from asr.checkpoint import save_checkpoint
    from asr.features import FeatureSpec
    from asr.model import CTCModel, ModelDims
    from asr.text import CharTokenizer

    tokenizer = CharTokenizer.from_texts(["abc"])
    dims = ModelDims(vocab_size=len(tokenizer), conv_channels=8, hidden_size=8, num_layers=1)
    features = FeatureSpec()
    save_checkpoint(
        path,
        {
            "model_dims": dims.to_dict(),
            "model": {k: v * scale for k, v in CTCModel(dims).state_dict().items()},
            "features": features.to_dict(),
            "tokenizer": tokenizer.to_dict(),
        },
    )
    return path
