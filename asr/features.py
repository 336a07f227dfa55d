"""Log-mel features, their normalisation, SpecAugment and a frequency warp (VTLP).

Defaults: 16 kHz audio, 25 ms Hann window (400 samples), 10 ms hop (160 samples),
80 slaney mel bands over 0-8 kHz, power spectrum, natural log with a 1e-6 floor.
A clip of N samples gives ``N // hop + 1`` frames (centred frames, zero padded at the
ends), which makes batched and per-clip extraction give identical values.

Where it runs: on CPU a per-clip STFT in data-loader workers is faster than one batched
STFT (measured 2-4x here: the batched buffer spills out of cache); on a GPU the training
loop extracts a whole padded batch at once. Both call :class:`LogMel` the same way.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
import torchaudio.functional as taf
from torch import nn

LOG_FLOOR = 1e-6  # keeps log() finite on digital silence


@dataclass
class FeatureSpec:
    """Everything needed to rebuild the front end; stored in checkpoints."""

    sample_rate: int = 16000
    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 0  # 0: the window length rounded up to... itself (no zero-padding of frames)
    f_min: float = 0.0
    f_max: float = 0.0  # 0: sample_rate / 2
    normalize: str = "utterance"  # "utterance" | "global" | "none"

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def fft_size(self) -> int:
        return self.n_fft or self.win_length

    @property
    def top_hz(self) -> float:
        """The top edge of the mel bands: ``f_max``, or the Nyquist frequency when it is 0."""
        return self.f_max or self.sample_rate / 2

    def to_dict(self) -> dict:
        return asdict(self)


def num_frames(num_samples: torch.Tensor | int, hop_length: int) -> torch.Tensor | int:
    """Frames produced for ``num_samples`` samples with centred framing."""
    return num_samples // hop_length + 1


def lengths_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Bool mask [B, max_len], True on valid positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


# Frames (summed over the batch) per STFT call on the CPU: ~1 MB of complex spectrum
# (800 x 201 bins x 8 bytes), which stays in cache.
CPU_PIECE_FRAMES = 800
# Mel bands per block of the CPU mel projection. A triangular filter touches only a few
# FFT bins, so 16 neighbouring bands span a fraction of the 201 bins: multiplying only
# those does ~1/5 of the dense matmul's work (2.3x faster measured, the same sums).
MEL_BLOCK = 16


def mel_blocks(fbank: torch.Tensor, size: int = MEL_BLOCK) -> list[tuple[int, int, torch.Tensor]]:
    """fbank [F, M] -> per group of ``size`` bands: (first bin, end bin, weights [bins, bands])
    covering every non-zero weight of those bands."""
    blocks = []
    for first in range(0, fbank.shape[1], size):
        part = fbank[:, first : first + size]
        used = part.ne(0).any(dim=1).nonzero().flatten()
        lo, hi = (int(used.min()), int(used.max()) + 1) if len(used) else (0, 1)
        blocks.append((lo, hi, part[lo:hi].contiguous()))
    return blocks


class LogMel(nn.Module):
    """Waveforms [B, N] (+ lengths [B]) -> log-mel [B, T, n_mels] (+ frame lengths [B]).

    Normalisation (per utterance, or with global statistics from the training set) is part
    of the module so that a checkpoint carries it: ``global`` statistics live in buffers.
    """

    def __init__(self, spec: FeatureSpec):
        super().__init__()
        self.spec = spec
        if spec.normalize not in ("utterance", "global", "none"):
            raise ValueError(
                f"features.normalize must be utterance|global|none, got {spec.normalize!r}"
            )
        fbank = taf.melscale_fbanks(
            spec.fft_size // 2 + 1,
            spec.f_min,
            spec.top_hz,
            spec.n_mels,
            spec.sample_rate,
            "slaney",
            "slaney",
        )  # [n_freqs, n_mels]
        self.register_buffer("fbank", fbank, persistent=False)
        self.cpu_blocks = mel_blocks(fbank)  # CPU inputs only: not a buffer, never moved
        self.register_buffer("window", torch.hann_window(spec.win_length), persistent=False)
        self.register_buffer("mean", torch.zeros(spec.n_mels))
        self.register_buffer("std", torch.ones(spec.n_mels))

    def frame_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        return num_frames(sample_lengths, self.spec.hop_length)

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """Un-normalised log-mel of zero-padded waves [B, N] -> [B, T, n_mels] (float32).

        Frames are centred (frame t on sample t * hop, zeros beyond the ends): the wave is
        padded by fft_size // 2 on each side and framed from there. On the CPU the frames
        are computed CPU_PIECE_FRAMES (over the batch) at a time: one STFT of a long clip
        or a big batch spills its spectrogram out of the cache and ran 2-3x slower
        (bench/bench_features.py). Each frame sees the same samples either way.
        """
        spec = self.spec
        half = spec.fft_size // 2
        padded = F.pad(wave.float(), (half, half))
        frames = 1 + wave.shape[1] // spec.hop_length
        step = frames
        if wave.device.type == "cpu":
            step = max(16, CPU_PIECE_FRAMES // max(1, wave.shape[0]))
        pieces = []
        for first in range(0, frames, step):
            last = min(first + step, frames)  # frames [first, last)
            chunk = padded[
                :, first * spec.hop_length : (last - 1) * spec.hop_length + spec.fft_size
            ]
            stft = torch.stft(
                chunk,
                n_fft=spec.fft_size,
                hop_length=spec.hop_length,
                win_length=spec.win_length,
                window=self.window,
                center=False,
                return_complex=True,
            )  # [B, F, last - first]
            # |X|^2 as X * conj(X): one vectorised pass, half the time of re^2 + im^2
            power = (stft * stft.conj()).real.transpose(1, 2).contiguous()  # [B, frames, F]
            if wave.device.type == "cpu":
                mel = torch.cat([power[..., lo:hi] @ w for lo, hi, w in self.cpu_blocks], dim=2)
            else:
                mel = torch.matmul(power, self.fbank)  # [B, frames, n_mels]
            pieces.append(torch.log(mel + LOG_FLOOR))
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)

    def forward(
        self, wave: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """wave [B, N] zero-padded, lengths [B] in samples -> (feats [B, T, M], frames [B])."""
        with torch.autocast(wave.device.type, enabled=False):
            feats = self.log_mel(wave)
            frames = self.frame_lengths(lengths).clamp(max=feats.shape[1])
            feats = self.normalize(feats, frames)
        return feats, frames

    def normalize(self, feats: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Apply the configured normalisation; padded frames come out as exact zeros."""
        mask = lengths_mask(frames, feats.shape[1]).unsqueeze(-1)  # [B, T, 1]
        mode = self.spec.normalize
        if mode == "utterance":
            count = frames.clamp(min=1).to(feats.dtype)[:, None, None]
            mean = (feats * mask).sum(1, keepdim=True) / count
            var = (((feats - mean) * mask) ** 2).sum(1, keepdim=True) / count
            feats = (feats - mean) / torch.sqrt(var + 1e-5)
        elif mode == "global":
            feats = (feats - self.mean) / self.std
        return feats * mask

    @torch.no_grad()
    def set_global_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std.clamp(min=1e-3))


class RunningStats:
    """Per-band mean and std of log-mel frames, accumulated in float64 (Chan et al. merge)."""

    def __init__(self, n_mels: int):
        self.count = 0
        self.mean = torch.zeros(n_mels, dtype=torch.float64)
        self.m2 = torch.zeros(n_mels, dtype=torch.float64)

    def update(self, frames: torch.Tensor) -> None:
        """frames [T, n_mels] (valid frames only)."""
        x = frames.double()
        n = x.shape[0]
        if n == 0:
            return
        batch_mean = x.mean(0)
        batch_m2 = ((x - batch_mean) ** 2).sum(0)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.m2 += batch_m2 + delta**2 * self.count * n / total
        self.count = total

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        std = torch.sqrt(self.m2 / max(self.count - 1, 1))
        return self.mean.float(), std.float()


@dataclass
class SpecAugmentSpec:
    freq_masks: int = 2
    freq_width: int = 27  # bands, at most
    time_masks: int = 2
    time_width: float = 0.05  # fraction of the utterance, at most
    time_width_max: int = 40  # frames, at most
    # vocal-tract-length perturbation: each utterance's spectrum stretched along frequency by
    # a factor drawn uniformly in [1 - freq_warp, 1 + freq_warp] (0: off)
    freq_warp: float = 0.0

    def check(self) -> None:
        """Raise ValueError naming the first field outside its range."""
        for name in ("freq_masks", "freq_width", "time_masks", "time_width_max"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.time_width <= 1:
            raise ValueError(f"time_width must be in [0, 1], got {self.time_width}")
        if not 0 <= self.freq_warp < 0.5:
            raise ValueError(f"freq_warp must be in [0, 0.5), got {self.freq_warp}")


def slaney_mel(hz: torch.Tensor) -> torch.Tensor:
    """Hz -> mels on the Slaney scale of the filterbank: linear below 1 kHz, log above."""
    linear = hz * 3.0 / 200.0
    log = 15.0 + torch.log(hz.clamp(min=1e-3) / 1000.0) * (27.0 / math.log(6.4))
    return torch.where(hz < 1000.0, linear, log)


def slaney_hz(mel: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`slaney_mel`."""
    linear = mel * 200.0 / 3.0
    log = 1000.0 * torch.exp((mel - 15.0) * (math.log(6.4) / 27.0))
    return torch.where(mel < 15.0, linear, log)


def frequency_warp(
    feats: torch.Tensor,
    factors: torch.Tensor,
    f_min: float,
    f_max: float,
) -> torch.Tensor:
    """Stretch each utterance's log-mel spectrum along frequency: feats [B, T, M], factors [B].

    Band k of utterance b takes the value the input had at (its centre frequency) / factor,
    interpolated between neighbouring bands: a factor above 1 moves formants and harmonics
    up, as a shorter vocal tract would; below 1, down. Frequencies past the top or bottom
    band repeat that band. Padded frames (zeros) stay zeros.
    """
    batch, _, n_mels = feats.shape
    edges = torch.linspace(
        float(slaney_mel(torch.tensor(f_min))), float(slaney_mel(torch.tensor(f_max))), n_mels + 2
    )
    step = edges[1] - edges[0]
    centres = slaney_hz(edges[1:-1])  # [M] Hz
    source = centres[None, :] / factors.float().cpu()[:, None]  # [B, M] Hz
    index = ((slaney_mel(source) - edges[0]) / step - 1).clamp(0, n_mels - 1)
    low = index.floor().long().clamp(max=n_mels - 2)
    frac = (index - low).to(feats.device, feats.dtype)[:, None, :]  # [B, 1, M]
    low = low.to(feats.device)[:, None, :].expand(batch, feats.shape[1], n_mels)
    below = feats.gather(2, low)
    above = feats.gather(2, low + 1)
    return below + (above - below) * frac


def spec_augment(
    feats: torch.Tensor,
    lengths: torch.Tensor,
    spec: SpecAugmentSpec,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero random frequency bands and time spans of feats [B, T, M], within each length.

    Masks are zeros, i.e. the mean of normalised features. Vectorised over the batch.
    """
    batch, time, n_mels = feats.shape
    device = feats.device
    keep = torch.ones_like(feats, dtype=torch.bool)
    # Every draw at once from the (CPU, resumable) generator, in one non-blocking copy: a
    # blocking one per mask would make the host wait for the device at every step.
    draws = torch.rand(2 * (spec.freq_masks + spec.time_masks), batch, generator=generator)
    draws = iter(draws.to(device, non_blocking=True))
    bands = torch.arange(n_mels, device=device)
    for _ in range(spec.freq_masks):
        width = (next(draws) * (spec.freq_width + 1)).long()
        start = (next(draws) * (n_mels - width + 1).float()).long()
        band = (bands[None] >= start[:, None]) & (bands[None] < (start + width)[:, None])
        keep &= ~band[:, None, :]
    steps = torch.arange(time, device=device)
    max_width = (lengths.float() * spec.time_width).long().clamp(max=spec.time_width_max)
    for _ in range(spec.time_masks):
        width = (next(draws) * (max_width + 1).float()).long()
        start = (next(draws) * (lengths - width + 1).clamp(min=1).float()).long()
        span = (steps[None] >= start[:, None]) & (steps[None] < (start + width)[:, None])
        keep &= ~span[:, :, None]
    return feats * keep
