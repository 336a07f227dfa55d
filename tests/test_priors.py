"""Label priors: estimated from posteriors, stored in checkpoints, divided out in beam search."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_checkpoint

from asr.checkpoint import CheckpointError, build_from_checkpoint, store_log_priors
from asr.config import DecodingConfig
from asr.priors import estimate_log_priors, prior_offsets
from asr.text import CharTokenizer

pytest.importorskip("kenlm")  # asr.beam reads LMs with it
from asr.beam import BeamDecoder  # noqa: E402

TOK = CharTokenizer.from_texts(["cat cab"])
ID = {s: i for i, s in enumerate(TOK.symbols)}


def test_estimate_is_the_mean_posterior_over_every_frame():
    one = np.log(np.array([[0.5, 0.5, 0.0], [0.9, 0.05, 0.05]]) + 1e-12)
    two = np.log(np.array([[0.1, 0.1, 0.8]]))
    got = estimate_log_priors([one, two])
    want = np.array([0.5 + 0.9 + 0.1, 0.5 + 0.05 + 0.1, 0.0 + 0.05 + 0.8]) / 3
    np.testing.assert_allclose(np.exp(got), want, rtol=1e-6)
    with pytest.raises(ValueError, match="no frames"):
        estimate_log_priors([np.zeros((0, 3))])


def test_offsets_leave_kept_units_and_centre_the_rest():
    log_priors = np.log([0.6, 0.1, 0.2, 0.05, 0.05])
    offsets = prior_offsets(log_priors, 0.5, keep=(0, 1))
    assert offsets[0] == offsets[1] == 0
    units = np.log([0.2, 0.05, 0.05])
    np.testing.assert_allclose(offsets[2:], -0.5 * (units - np.median(units)), rtol=1e-6)
    assert not prior_offsets(log_priors, 0.0).any()
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="prior_weight"):
            prior_offsets(log_priors, bad)


def _frames() -> torch.Tensor:
    """ "c a ?" where ? is b (0.5) or t (0.4), a blank after each: acoustics say "cab"."""
    rows = []
    for named in ({"c": 0.9}, {"<blank>": 0.9}, {"a": 0.9}, {"<blank>": 0.9},
                  {"b": 0.5, "t": 0.4}, {"<blank>": 0.9}):  # fmt: skip
        row = torch.full((len(TOK),), 1e-3)
        for symbol, prob in named.items():
            row[TOK.blank_id if symbol == "<blank>" else ID[symbol]] = prob
        rows.append(row / row.sum())
    return torch.stack(rows).log()[None]


def test_a_unit_the_model_emits_often_loses_a_close_call():
    # b is four times as common as the median unit, t 2.5 times rarer
    log_priors = np.full(len(TOK), math.log(0.05))
    log_priors[ID["b"]], log_priors[ID["t"]] = math.log(0.2), math.log(0.02)
    lp = _frames()
    lengths = torch.tensor([lp.shape[1]])
    texts = {}
    for weight in (0.0, 0.05, 1.0):
        cfg = DecodingConfig(method="beam", beam_size=4, prior_weight=weight)
        texts[weight] = BeamDecoder(cfg, TOK, log_priors=log_priors)(lp, lengths)[0].text
    # ln(0.5 / 0.4) = 0.22 nats for b; the priors give t w * ln(0.2 / 0.02) = 2.3 w nats
    assert texts == {0.0: "cab", 0.05: "cab", 1.0: "cat"}
    decoder = BeamDecoder(DecodingConfig(method="beam", beam_size=4), TOK, log_priors=log_priors)
    decoder.set_weights(0.0, 0.0, 0.0, prior_weight=1.0)
    assert decoder(lp, lengths)[0].text == "cat"


def test_prior_weight_without_priors_is_refused():
    cfg = DecodingConfig(method="beam", prior_weight=0.3)
    with pytest.raises(ValueError, match="^decoding.prior_weight needs label priors"):
        BeamDecoder(cfg, TOK)
    with pytest.raises(ValueError, match="label priors for 2 units"):
        BeamDecoder(DecodingConfig(method="beam"), TOK, log_priors=[0.0, 0.0])


def test_priors_travel_in_the_checkpoint(tmp_path: Path):
    path = random_checkpoint(tmp_path / "m.pt")
    assert build_from_checkpoint(path).log_priors is None
    vocab = len(build_from_checkpoint(path).tokenizer)
    priors = [math.log(1 / vocab)] * vocab
    store_log_priors(path, priors)
    assert build_from_checkpoint(path).log_priors == pytest.approx(priors)
    with pytest.raises(CheckpointError, match=r"m\.pt: 2 label priors for"):
        store_log_priors(path, [0.0, 0.0])


def test_the_transcriber_hands_the_checkpoint_priors_to_beam_search(tmp_path: Path):
    import soundfile as sf

    from asr.transcribe import Transcriber

    path = random_checkpoint(tmp_path / "m.pt", scale=4.0)
    cfg = DecodingConfig(method="beam", beam_size=4, prior_weight=2.0)
    with pytest.raises(ValueError, match="needs label priors"):
        Transcriber.from_checkpoint(path, "cpu", cfg)
    vocab = len(build_from_checkpoint(path).tokenizer)
    flat = [math.log(1 / vocab)] * vocab  # no unit moves against another
    store_log_priors(path, flat)
    audio = tmp_path / "noise.wav"
    sf.write(audio, np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32), 16000)
    plain_cfg = DecodingConfig(method="beam", beam_size=4)
    with Transcriber.from_checkpoint(path, "cpu", cfg) as corrected:
        assert corrected.decoder.log_priors == pytest.approx(flat)
        with Transcriber.from_checkpoint(path, "cpu", plain_cfg) as plain:
            want = plain.transcribe([audio])[0]
            got = corrected.transcribe([audio])[0]
    assert got.text == want.text
