"""Waveform augmentation on the fly: speed, gain, additive noise, synthetic reverberation.

Applied per clip in the data-loader workers, before log-mel (SpecAugment comes later, on
the features). Every random draw comes from a generator seeded with (seed, epoch, index),
so an epoch's augmented audio is the same whichever worker makes it and after a resume.

- speed: resampling by a factor (Kaldi-style speed perturbation: tempo and pitch change
  together), one of ``speeds`` drawn uniformly;
- gain: a random level change in dB;
- noise at a random SNR: white, pink (1/f, shaped in the frequency domain) or babble (a
  few other training utterances summed, supplied by the dataset);
- reverberation: convolution with a synthetic room impulse response, exponentially
  decaying noise with a random RT60 after a direct-path impulse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import soxr
import torch
from scipy.signal import fftconvolve


@dataclass
class WaveAugmentSpec:
    speeds: list[float] = field(default_factory=list)  # e.g. [0.9, 1.0, 1.1]; empty: off
    gain_db: float = 0.0  # +- this many dB; 0: off
    noise_prob: float = 0.0
    noise_types: list[str] = field(default_factory=lambda: ["white", "pink", "babble"])
    snr_db: list[float] = field(default_factory=lambda: [5.0, 30.0])
    reverb_prob: float = 0.0
    rt60: list[float] = field(default_factory=lambda: [0.15, 0.7])  # seconds

    @property
    def enabled(self) -> bool:
        return bool(self.speeds) or self.gain_db > 0 or self.noise_prob > 0 or self.reverb_prob > 0


def clip_generator(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random source for one clip in one epoch: independent of worker and order."""
    return np.random.default_rng([seed, epoch, index])


def speed_perturb(wave: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """Play ``wave`` ``factor`` times faster (and higher): resample from rate*factor to rate."""
    if factor == 1.0:
        return wave
    return soxr.resample(wave, sample_rate * factor, sample_rate, quality="HQ").astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Noise with a 1/f power spectrum, unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.arange(spectrum.shape[0])
    spectrum[1:] /= np.sqrt(freqs[1:])  # amplitude 1/sqrt(f) -> power 1/f
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, n)
    return noise / max(np.sqrt(np.mean(noise**2)), 1e-9)


def room_impulse(rt60: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic impulse response: direct path, then noise decaying 60 dB over ``rt60`` s."""
    n = max(int(rt60 * sample_rate), 1)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # ln(1000) = 60 dB of amplitude
    tail[0] = 0.0
    tail *= 0.3 / max(np.sqrt(np.sum(tail**2)), 1e-9)  # reverberant energy below the direct path
    tail[0] = 1.0
    return tail


def add_noise(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix ``noise`` (tiled or cut to length) into ``wave`` at ``snr_db``."""
    if noise.shape[0] < wave.shape[0]:
        noise = np.tile(noise, wave.shape[0] // max(noise.shape[0], 1) + 1)
    noise = noise[: wave.shape[0]]
    signal_power = np.mean(wave**2)
    noise_power = max(np.mean(noise**2), 1e-12)
    if signal_power <= 0:
        return wave
    scale = np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return (wave + scale * noise).astype(np.float32)


def augment_wave(
    wave: torch.Tensor,
    sample_rate: int,
    spec: WaveAugmentSpec,
    rng: np.random.Generator,
    babble: Callable[[int], np.ndarray] | None = None,
) -> torch.Tensor:
    """Apply the augmentations of ``spec`` to a mono wave [N]; returns a new wave [N']."""
    x = wave.numpy().astype(np.float32)
    if spec.speeds:
        x = speed_perturb(x, float(rng.choice(spec.speeds)), sample_rate)
    if spec.reverb_prob and rng.random() < spec.reverb_prob:
        impulse = room_impulse(rng.uniform(*spec.rt60), sample_rate, rng)
        x = fftconvolve(x, impulse)[: x.shape[0]].astype(np.float32)
    if spec.noise_prob and rng.random() < spec.noise_prob:
        kind = str(rng.choice(spec.noise_types))
        if kind == "babble" and babble is not None:
            noise = babble(x.shape[0])
        elif kind == "pink":
            noise = pink_noise(x.shape[0], rng)
        else:
            noise = rng.standard_normal(x.shape[0])
        x = add_noise(x, noise, rng.uniform(*spec.snr_db))
    if spec.gain_db:
        x = x * np.float32(10 ** (rng.uniform(-spec.gain_db, spec.gain_db) / 20))
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak > 1.0:  # keep within the range real recordings have
        x = x / peak
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
