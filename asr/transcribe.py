"""Transcribing audio files with a checkpoint, from Python or from ``asr-transcribe``.

>>> t = Transcriber.from_checkpoint("best.pt")
>>> t.transcribe(["a.wav", "b.flac"])[0].text

The checkpoint alone rebuilds features, tokenizer and model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
    def transcribe_waves(self, waves: Sequence[torch.Tensor]) -> list[str]:
        """Texts for mono waveforms [N] at :attr:`sample_rate`, decoded as one padded batch."""
        padded, lengths = pad_stack([w.float() for w in waves])
        feats, frames = self.loaded.features(padded.to(self.device), lengths.to(self.device))
        log_probs, out_lengths = self.loaded.model(feats, frames)
        return [hyp.text for hyp in self.decoder(log_probs, out_lengths)]

    def transcribe(self, paths: Sequence[str | Path]) -> list[Transcript]:
        """Transcripts of audio files, in the order given; similar lengths are batched together."""
        waves = [load_audio(p, self.sample_rate) for p in paths]
        order = sorted(range(len(waves)), key=lambda i: waves[i].shape[0])
        texts: list[str] = [""] * len(waves)
        batch: list[int] = []
        cap = self.batch_seconds * self.sample_rate
        for index in order + [None]:
            if batch and (index is None or (len(batch) + 1) * waves[index].shape[0] > cap):
                for i, text in zip(
                    batch, self.transcribe_waves([waves[i] for i in batch]), strict=True
                ):
                    texts[i] = text
                batch = []
            if index is not None:
                batch.append(index)
        return [
            Transcript(str(p), t, w.shape[0] / self.sample_rate)
            for p, t, w in zip(paths, texts, waves, strict=True)
        ]
