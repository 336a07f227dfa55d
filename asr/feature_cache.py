"""A disk cache of log-mel features, so that epochs after the first skip audio decoding.

Decoding, resampling and the STFT are most of a data-loader worker's time; on a machine
with few cores per GPU they can starve it. With ``data.feature_cache=DIR`` the first epoch
writes each clip's features (the :class:`~asr.features.LogMel` output, normalised, float32
``.npy``) and later epochs, and the dev set at every evaluation, read them back.

Only clips without waveform augmentation are cached: speed, noise and reverberation draw
anew every epoch, so their features never repeat (SpecAugment, applied on the batch, still
works with the cache). An entry's name is a hash of the audio file's path, byte range,
size, inode and change times and of everything that shapes the features (the settings and
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

# Bump when asr.features computes different values for the same settings: old entries
# then sit under another tag and are never read.
FEATURES_VERSION = 1


def features_tag(features: LogMel) -> str:
    """A digest of the feature code's version, the settings and the statistics: entries of
    other settings differ."""
    settings = {"version": FEATURES_VERSION, **asdict(features.spec)}
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode())
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
        st = os.stat(utt.audio_filepath)
        key = f"{os.path.abspath(utt.audio_filepath)}|{utt.byte_range}|{st.st_size}|{st.st_ino}|"
        name = hashlib.sha1(f"{key}{st.st_mtime_ns}|{st.st_ctime_ns}".encode()).hexdigest()
        return self.root / name[:2] / f"{name}.npy"

    def load(self, utt: Utterance) -> torch.Tensor | None:
        """The cached features [T, n_mels], or None (absent, or unreadable: recomputed)."""
        try:
            data = np.load(self.path(utt), allow_pickle=False)
        except (OSError, ValueError, EOFError):  # EOFError: an empty file after a crash
            data = None
        if data is None or data.ndim != 2 or data.shape[1] != self.features.spec.n_mels:
            self.misses += 1
            return None
        self.hits += 1
        return torch.from_numpy(data)

    def save(self, utt: Utterance, feats: torch.Tensor) -> None:
        """Store ``feats`` [T, n_mels]; a crash or a racing worker never leaves a torn file."""
        path = self.path(utt)
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as handle:
                np.save(handle, feats.detach().cpu().float().numpy(), allow_pickle=False)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk loses a cache entry, not a run
