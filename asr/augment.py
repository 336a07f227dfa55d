"""Waveform augmentation on the fly: speed, silence, reverberation, additive noise, gain.

Applied per clip in the data-loader workers, before log-mel (SpecAugment comes later, on
the features). Every random draw comes from a generator seeded with (seed, epoch, index),
so an epoch's augmented audio is the same whichever worker makes it and after a resume.
The draws that set a clip's length (its speed and its pads, a :class:`ClipPlan`) come from
a generator of their own, so the batch sampler can make the same draws before the clip is
loaded and size batches by the length the model will see.

- speed: resampling by a factor (Kaldi-style speed perturbation: tempo and pitch change
  together), one of ``speeds`` drawn uniformly;
- silence: a random stretch of near-silence (faint noise, or digital zeros) before and after
  the clip, so the model does not learn that speech starts and ends where a corpus happens
  to cut it (a model trained without it read FSDD's tightly cut dev digits with 200 ms of
  digital silence around them as 111 errors in 250 instead of 5); it comes before
  reverberation and noise, which then cover it as they would a real pause;
- reverberation: convolution with a synthetic room impulse response, exponentially
  decaying noise with a random RT60 after a direct-path impulse;
- noise at a random SNR: white, pink (1/f, shaped in the frequency domain) or babble (a
  few other training utterances summed, supplied by the dataset);
- gain: a random level change in dB.

In that order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import soxr
import torch
from scipy.signal import fftconvolve

NOISE_TYPES = ("white", "pink", "babble")


@dataclass
class WaveAugmentSpec:
    speeds: list[float] = field(default_factory=list)  # e.g. [0.9, 1.0, 1.1]; empty: off
    gain_db: float = 0.0  # +- this many dB; 0: off
    noise_prob: float = 0.0
    noise_types: list[str] = field(default_factory=lambda: list(NOISE_TYPES))
    snr_db: list[float] = field(default_factory=lambda: [5.0, 30.0])
    reverb_prob: float = 0.0
    rt60: list[float] = field(default_factory=lambda: [0.15, 0.7])  # seconds
    pad_prob: float = 0.0  # chance of silence around a clip
    pad_seconds: float = 0.5  # at most this much before, and (drawn apart) after
    pad_level_db: list[float] = field(default_factory=lambda: [-70.0, -35.0])  # vs the clip

    @property
    def enabled(self) -> bool:
        return (
            bool(self.speeds)
            or self.gain_db > 0
            or self.noise_prob > 0
            or self.reverb_prob > 0
            or self.pad_prob > 0
        )

    def check(self) -> None:
        """Raise ValueError naming the first field outside its range."""
        for name in ("noise_prob", "reverb_prob", "pad_prob"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
        if not 0 <= self.pad_seconds <= 10:
            raise ValueError(f"pad_seconds must be in [0, 10], got {self.pad_seconds}")
        if not 0 <= self.gain_db < math.inf:
            raise ValueError(f"gain_db must be finite and >= 0, got {self.gain_db}")
        for name in ("snr_db", "rt60", "pad_level_db"):
            bounds = getattr(self, name)
            if len(bounds) != 2 or not all(np.isfinite(bounds)) or bounds[0] > bounds[1]:
                raise ValueError(f"{name} must be [low, high] with low <= high, got {bounds}")
        if self.rt60[0] <= 0:
            raise ValueError(f"rt60 must be above 0 seconds, got {self.rt60}")
        if self.pad_level_db[1] > 0:
            raise ValueError(f"pad_level_db must be at most 0 dB, got {self.pad_level_db}")
        if not all(0 < f < math.inf for f in self.speeds):
            raise ValueError(f"speeds must be finite and above 0, got {self.speeds}")
        unknown = set(self.noise_types) - set(NOISE_TYPES)
        if not self.noise_types or unknown:
            raise ValueError(f"noise_types must be some of {NOISE_TYPES}, got {self.noise_types}")


def clip_generator(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random source for one clip in one epoch: independent of worker and order."""
    return np.random.default_rng([seed, epoch, index])


@dataclass(frozen=True)
class ClipPlan:
    """The draws that set an augmented clip's length: its speed and its silence pads."""

    speed: float = 1.0
    pad_before: float = 0.0  # seconds
    pad_after: float = 0.0

    def seconds(self, duration: float) -> float:
        """How long a clip of ``duration`` seconds lasts once augmented."""
        return duration / self.speed + self.pad_before + self.pad_after


def draw_plan(spec: WaveAugmentSpec, rng: np.random.Generator) -> ClipPlan:
    """A clip's speed (one of ``speeds``) and, with ``pad_prob``, its pads (each uniform
    in [0, ``pad_seconds``])."""
    speed = float(rng.choice(spec.speeds)) if spec.speeds else 1.0
    if spec.pad_prob and rng.random() < spec.pad_prob:
        before, after = rng.uniform(0, spec.pad_seconds, size=2)
        return ClipPlan(speed, float(before), float(after))
    return ClipPlan(speed)


def plan_clip(spec: WaveAugmentSpec, seed: int, epoch: int, index: int) -> ClipPlan:
    """The plan of one clip in one epoch, the same in the sampler and in any worker: drawn
    from a generator apart from :func:`clip_generator`'s (its fourth seed word)."""
    return draw_plan(spec, np.random.default_rng([seed, epoch, index, 1]))


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


def pad_silence(
    wave: np.ndarray,
    before: int,
    after: int,
    spec: WaveAugmentSpec,
    rng: np.random.Generator,
) -> np.ndarray:
    """``wave`` with ``before`` and ``after`` samples of near-silence around it.

    One clip in five gets digital zeros; the others white noise ``pad_level_db`` (drawn once
    for both pads) below the clip's RMS, a quiet room.
    """
    level_db = rng.uniform(*spec.pad_level_db)
    if rng.random() < 0.2:
        level = 0.0
    else:
        level = np.sqrt(np.mean(wave**2)) * 10 ** (level_db / 20) if wave.size else 0.0
    pads = [(rng.standard_normal(n) * level).astype(np.float32) for n in (before, after)]
    return np.concatenate([pads[0], wave, pads[1]])


def add_noise(
    wave: np.ndarray, noise: np.ndarray, snr_db: float, signal_power: float | None = None
) -> np.ndarray:
    """Mix ``noise`` (tiled or cut to length) into ``wave`` at ``snr_db``.

    ``signal_power`` defaults to the mean power of ``wave``; give the speech's own when
    ``wave`` has been padded with silence, so the pads do not lower the noise.
    """
    if noise.shape[0] < wave.shape[0]:
        noise = np.tile(noise, wave.shape[0] // max(noise.shape[0], 1) + 1)
    noise = noise[: wave.shape[0]]
    if signal_power is None:
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
    plan: ClipPlan | None = None,
) -> torch.Tensor:
    """Apply the augmentations of ``spec`` to a mono wave [N]; returns a new wave [N'].

    ``plan`` gives the speed and the pads (see :func:`plan_clip`); without one they are
    drawn from ``rng`` too.
    """
    if plan is None:
        plan = draw_plan(spec, rng)
    x = wave.numpy().astype(np.float32)
    x = speed_perturb(x, plan.speed, sample_rate)
    speech_power = None  # noise is set against the speech, not the speech and its pads
    if plan.pad_before or plan.pad_after:
        speech_power = float(np.mean(x**2)) if x.size else 0.0
        before, after = (int(s * sample_rate) for s in (plan.pad_before, plan.pad_after))
        x = pad_silence(x, before, after, spec, rng)
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
        x = add_noise(x, noise, rng.uniform(*spec.snr_db), speech_power)
    if spec.gain_db:
        x = x * np.float32(10 ** (rng.uniform(-spec.gain_db, spec.gain_db) / 20))
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak > 1.0:  # keep within the range real recordings have
        x = x / peak
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
