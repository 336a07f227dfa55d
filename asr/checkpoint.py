"""Self-describing checkpoints, written atomically and read without unpickling code.

A checkpoint is a dict of tensors and plain values (no custom classes), so it loads with
``torch.load(weights_only=True)``: a crafted file cannot run code. It carries everything
needed to transcribe with it alone (whisper-style)::

    {"format": "asr-checkpoint", "format_version": 1,
     "model_dims": {...}, "model": state_dict,
     "features": FeatureSpec dict, "feature_stats": {"mean": [M], "std": [M]},
     "tokenizer": {"type": "char", "symbols": [...]},
     "step": int, "epoch": int, "metrics": {...}, "config": {...},
     "label_log_priors": [V] (optional, from ``asr-lm priors``),
     # training state, only in resumable checkpoints:
     "optimizer": ..., "scheduler": ..., "sampler": ..., "rng": ..., "history": ...}
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from asr.features import FeatureSpec, LogMel
from asr.io_utils import atomic_write
from asr.model import CTCModel, ModelDims
from asr.priors import PRIORS_KEY
from asr.text import Tokenizer, tokenizer_from_dict

FORMAT = "asr-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus format tags) to ``path`` atomically."""
    state = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_write(path, "wb") as handle:
        handle.write(buffer.getbuffer())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (weights only) and check its format and version."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with (
            warnings.catch_warnings()
        ):  # torch warns about foreign pickle protocols; we refuse them
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _unpickler_reason(exc)
        if "GLOBAL" in reason:
            raise CheckpointError(
                f"{path}: refused to load: it names code to run, not just tensors and plain "
                f"values ({reason})"
            ) from None
        raise CheckpointError(f"{path}: damaged or not a checkpoint ({reason})") from None
    except Exception as exc:  # the unpickler trips over garbage in many ways: all mean damaged
        raise CheckpointError(
            f"{path}: unreadable or truncated checkpoint ({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an asr checkpoint (no '{FORMAT}' format tag)")
    version = state.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} is not supported "
            f"(this asr reads version {FORMAT_VERSION})"
        )
    missing = [k for k in ("model_dims", "model", "features", "tokenizer") if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return state


def _unpickler_reason(exc: BaseException) -> str:
    """The informative line of torch's long weights-only error text."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line:
            return line
    for before, line in zip(lines, lines[1:], strict=False):
        if before.endswith("error:"):
            return line
    return lines[0] if lines else type(exc).__name__


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@dataclass
class LoadedModel:
    """What a checkpoint rebuilds on its own: front end, model and tokenizer."""

    features: LogMel
    model: CTCModel
    tokenizer: Tokenizer
    state: dict[str, Any]

    @property
    def log_priors(self) -> list[float] | None:
        """The label priors ``asr-lm priors`` stored ([V] natural logs), if any."""
        priors = self.state.get(PRIORS_KEY)
        return None if priors is None else [float(x) for x in priors]


def build_from_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild features, model and tokenizer from a checkpoint, in eval mode on ``device``."""
    state = load_checkpoint(path)
    try:
        dims = ModelDims(**state["model_dims"])
        model = CTCModel(dims)
        model.load_state_dict(state["model"])
        features = LogMel(FeatureSpec(**state["features"]))
        stats = state.get("feature_stats")
        if stats is not None:
            features.set_global_stats(stats["mean"], stats["std"])
        tokenizer = tokenizer_from_dict(state["tokenizer"])
    except (TypeError, KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: inconsistent checkpoint ({_first_line(exc)})") from None
    if len(tokenizer) != dims.vocab_size:
        raise CheckpointError(
            f"{path}: tokenizer has {len(tokenizer)} symbols "
            f"but the model outputs {dims.vocab_size}"
        )
    return LoadedModel(features.to(device).eval(), model.to(device).eval(), tokenizer, state)


def store_log_priors(path: str | Path, log_priors: Sequence[float]) -> None:
    """Write label priors ([V] natural logs) into the checkpoint at ``path``, atomically."""
    state = load_checkpoint(path)
    vocab = state["model_dims"].get("vocab_size")
    if len(log_priors) != vocab:
        raise CheckpointError(f"{path}: {len(log_priors)} label priors for {vocab} outputs")
    state[PRIORS_KEY] = [float(x) for x in log_priors]
    save_checkpoint(path, state)


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file (identifies the checkpoint a report was made with)."""
    import hashlib

    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def list_checkpoints(folder: str | Path, prefix: str = "step_") -> list[Path]:
    """Step checkpoints in ``folder``, oldest first (by step number in the name)."""
    folder = Path(folder)
    found = [p for p in folder.glob(f"{prefix}*.pt") if p.stem[len(prefix) :].isdigit()]
    return sorted(found, key=lambda p: int(p.stem[len(prefix) :]))


def prune_checkpoints(folder: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` step checkpoints."""
    if keep <= 0:
        return
    for old in list_checkpoints(folder)[:-keep]:
        os.unlink(old)


def average_checkpoints(paths: list[str | Path], output: str | Path) -> Path:
    """Write the element-wise mean of several checkpoints' weights to ``output``.

    The checkpoints must hold the same model (dimensions, tokenizer, features); features,
    statistics and tokenizer come from the last one. Integer buffers are not averaged. The
    result transcribes and evaluates like any checkpoint, but does not resume training.
    """
    if not paths:
        raise CheckpointError("no checkpoints to average")
    states = [load_checkpoint(p) for p in paths]
    last = states[-1]
    for path, state in zip(paths, states, strict=True):
        for key in ("model_dims", "tokenizer", "features"):
            if state.get(key) != last.get(key):
                raise CheckpointError(f"{path}: its {key} differ from {paths[-1]}'s")
    averaged = {}
    for name, value in last["model"].items():
        if value.is_floating_point():
            stacked = torch.stack([s["model"][name].double() for s in states])
            averaged[name] = stacked.mean(0).to(value.dtype)
        else:
            averaged[name] = value
    keep = ("model_dims", "features", "feature_stats", "tokenizer", "step", "epoch", "config")
    result = {k: last[k] for k in keep if k in last}
    result["model"] = averaged
    result["averaged_from"] = [str(p) for p in paths]
    save_checkpoint(output, result)
    return Path(output)
