"""A disk cache of log-mel features, so that epochs after the first skip audio decoding.

Decoding, resampling and the STFT are most of a data-loader worker's time; on a machine
with few cores per GPU they can starve it. With ``data.feature_cache=DIR`` the first epoch
writes each clip's features (the :class:`~asr.features.LogMel` output, normalised, float32
``.npy``) and later epochs, and the dev set at every evaluation, read them back.

Only clips without waveform augmentation are cached: speed, noise and reverberation draw
anew every epoch, so their features never repeat (SpecAugment, applied on the batch, still
works with the cache). An entry's name is a hash of the audio file's path, byte range,
size and modification time and of everything that shapes the features (the settings and
the normalisation statistics), so a changed file or setting never reads a stale entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from asr.features import LogMel
from asr.manifest import Utterance


def features_tag(features: LogMel) -> str:
    """A digest of the feature settings and statistics: entries of other settings differ."""
    digest = hashlib.sha1(json.dumps(asdict(features.spec), sort_keys=True).encode())
    for buffer in (features.mean, features.std):
        digest.update(buffer.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()[:12]


class FeatureCache:
    """``folder/<tag>/<ab>/<hash>.npy`` entries of log-mel [T, n_mels] per audio clip."""

    def __init__(self, folder: str | Path, features: LogMel):
        self.folder = Path(folder).expanduser()
        self.features = features
        self._root: Path | None = None
        self.hits = 0
        self.misses = 0

    @property
    def root(self) -> Path:
        # Tagged at first use, not at construction: a resumed run sets its global
        # statistics after building the dataset.
        if self._root is None:
            self._root = self.folder / features_tag(self.features)
        return self._root

    def path(self, utt: Utterance) -> Path:
        stat = os.stat(utt.audio_filepath)
        key = f"{os.path.abspath(utt.audio_filepath)}|{utt.byte_range}|{stat.st_size}|"
        name = hashlib.sha1(f"{key}{stat.st_mtime_ns}".encode()).hexdigest()
        return self.root / name[:2] / f"{name}.npy"

    def load(self, utt: Utterance) -> torch.Tensor | None:
        """The cached features [T, n_mels], or None (absent, or unreadable: recomputed)."""
        try:
            path = self.path(utt)
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            self.misses += 1
            return None
        self.hits += 1
        return torch.from_numpy(data)

    def save(self, utt: Utterance, feats: torch.Tensor) -> None:
        """Store ``feats`` [T, n_mels]; a crash or a racing worker never leaves a torn file."""
        path = self.path(utt)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "wb") as handle:
                np.save(handle, feats.detach().cpu().float().numpy(), allow_pickle=False)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk loses a cache entry, not a run
