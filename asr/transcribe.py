"""Transcribing audio files with a checkpoint, from Python or from ``asr-transcribe``.

>>> t = Transcriber.from_checkpoint("best.pt")
>>> t.transcribe(["a.wav", "b.flac"])[0].text

The checkpoint alone rebuilds features, tokenizer and model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asr.audio import load_audio
from asr.checkpoint import LoadedModel, build_from_checkpoint
from asr.config import DecodingConfig
from asr.data import pad_stack
from asr.decoding import Decoder


@dataclass
class Transcript:
    """The result for one file."""

    path: str
    text: str
    duration: float  # seconds of audio


class Transcriber:
    """A loaded model plus a decoder; :meth:`transcribe` takes file paths or waveforms."""

    def __init__(
        self,
        loaded: LoadedModel,
        decoder: Decoder,
        device: torch.device,
        batch_seconds: float = 120.0,
    ):
        self.loaded = loaded
        self.decoder = decoder
        self.device = device
        self.batch_seconds = batch_seconds

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "auto", decoding: DecodingConfig | None = None
    ) -> Transcriber:
        from asr.evaluate import make_decoder
        from asr.train import pick_device

        dev = pick_device(device)
        loaded = build_from_checkpoint(path, dev)
        return cls(loaded, make_decoder(decoding or DecodingConfig(), loaded.tokenizer), dev)

    @property
    def sample_rate(self) -> int:
        return self.loaded.features.spec.sample_rate

    @torch.no_grad()
    def emissions(self, waves: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mono waveforms [N] at :attr:`sample_rate` -> (log_probs [B, T, V], lengths [B])."""
        padded, lengths = pad_stack([w.float() for w in waves])
        feats, frames = self.loaded.features(padded.to(self.device), lengths.to(self.device))
        return self.loaded.model(feats, frames)

    def transcribe_waves(self, waves: Sequence[torch.Tensor]) -> list[str]:
        """Texts for mono waveforms [N] at :attr:`sample_rate`, decoded as one padded batch."""
        return [hyp.text for hyp in self.decoder(*self.emissions(waves))]

    def batches(self, waves: Sequence[torch.Tensor]) -> Iterator[list[int]]:
        """Indices of ``waves`` in batches of similar length, each under ``batch_seconds``."""
        order = sorted(range(len(waves)), key=lambda i: waves[i].shape[0])
        batch: list[int] = []
        cap = self.batch_seconds * self.sample_rate
        for index in order:
            if batch and (len(batch) + 1) * waves[index].shape[0] > cap:
                yield batch
                batch = []
            batch.append(index)
        if batch:
            yield batch

    def file_emissions(self, paths: Sequence[str | Path]) -> list[np.ndarray]:
        """Log-probs [T, V] (float32, valid frames only) of each audio file, in order given."""
        waves = [load_audio(p, self.sample_rate) for p in paths]
        result: list[np.ndarray] = [np.zeros((0, 0), np.float32)] * len(waves)
        for batch in self.batches(waves):
            log_probs, lengths = self.emissions([waves[i] for i in batch])
            log_probs = log_probs.float().cpu().numpy()
            for row, (i, n) in enumerate(zip(batch, lengths.tolist(), strict=True)):
                result[i] = log_probs[row, :n].copy()
        return result

    def transcribe(self, paths: Sequence[str | Path]) -> list[Transcript]:
        """Transcripts of audio files, in the order given; similar lengths are batched together."""
        waves = [load_audio(p, self.sample_rate) for p in paths]
        texts: list[str] = [""] * len(waves)
        for batch in self.batches(waves):
            for i, text in zip(
                batch, self.transcribe_waves([waves[i] for i in batch]), strict=True
            ):
                texts[i] = text
        return [
            Transcript(str(p), t, w.shape[0] / self.sample_rate)
            for p, t, w in zip(paths, texts, waves, strict=True)
        ]
