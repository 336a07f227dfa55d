"""Every YAML in conf/ composes against its schema, and bad values are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from asr.config import DecodingConfig, EvaluateConfig, ModelConfig, TrainRunConfig

CONF = Path(__file__).resolve().parents[1] / "conf"


def _compose(name: str, overrides: list[str]):
    with initialize_config_module(config_module="asr.conf", version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


@pytest.mark.parametrize("group_file", sorted(p.relative_to(CONF) for p in CONF.glob("*/*.yaml")))
def test_every_group_option_composes(group_file: Path) -> None:
    group, option = group_file.parent.name, group_file.stem
    root = "evaluate" if group == "decoding" else "train"
    extra = ["checkpoint=model.pt"] if root == "evaluate" else []
    cfg = OmegaConf.to_object(_compose(root, [f"{group}={option}", *extra]))
    assert isinstance(cfg, TrainRunConfig if root == "train" else EvaluateConfig)
    if group == "model":
        assert isinstance(cfg.model, ModelConfig)
    if group == "decoding":
        assert isinstance(cfg.decoding, DecodingConfig)
        assert cfg.decoding.method == option


def test_root_configs_compose() -> None:
    train = OmegaConf.to_object(_compose("train", []))
    assert train.features.n_mels == 80 and train.features.hop_ms == 10.0
    evaluate = _compose("evaluate", ["checkpoint=x.pt"])
    assert OmegaConf.to_object(evaluate).checkpoint == "x.pt"


def test_experiment_picks_its_model() -> None:
    cfg = OmegaConf.to_object(_compose("train", ["experiment=fsdd"]))
    assert cfg.model.subsampling == 4
    assert cfg.data.train_manifests[0].endswith("fsdd/train.jsonl")


@pytest.mark.parametrize(
    ("name", "front_end", "kernel"),
    [("real_small", "conv2d", 3), ("real_small_fast", "conv1d", 5), ("demo", "conv1d", 5)],
)
def test_real_voice_recipes_pick_their_front_end(name: str, front_end: str, kernel: int) -> None:
    # real_small_fast inherits real_small but keeps the 1-D front end (docs/experiments.md)
    cfg = OmegaConf.to_object(_compose("train", [f"experiment={name}"]))
    assert (cfg.model.front_end, cfg.model.conv_kernel) == (front_end, kernel)


@pytest.mark.parametrize("name", ["demo", "fsdd", "real_small", "real_small_fast"])
def test_every_recipe_composes_and_pads_its_tightly_cut_clips(name: str) -> None:
    # the corpora here start their speech within milliseconds of the cut: a recipe that
    # never pads trains a model that misreads recordings with a pause around the words
    cfg = OmegaConf.to_object(_compose("train", [f"experiment={name}"]))
    cfg.augment.wave.check()
    assert cfg.augment.wave.pad_prob >= 0.25 and cfg.augment.wave.pad_seconds >= 0.2


def test_wrong_types_and_unknown_keys_are_refused() -> None:
    with pytest.raises((ValidationError, ConfigCompositionException)):
        _compose("train", ["train.epochs=many"])
    with pytest.raises(ConfigCompositionException):
        _compose("train", ["train.epoch=3"])  # typo: not in the schema
    with pytest.raises(ConfigCompositionException):
        _compose("train", ["model=huge"])  # no such option
