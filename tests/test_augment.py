"""Waveform augmentation: each transform does what it says, reproducibly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asr.augment import (
    WaveAugmentSpec,
    add_noise,
    augment_wave,
    clip_generator,
    pink_noise,
    room_impulse,
    speed_perturb,
)

SR = 16000


def tone(seconds: float = 1.0, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_frequency(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.argmax(spectrum) * SR / len(x))


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_length_and_pitch_by_the_factor(factor: float) -> None:
    out = speed_perturb(tone(), factor, SR)
    assert abs(len(out) - SR / factor) <= 2
    assert dominant_frequency(out) == pytest.approx(440 * factor, abs=2)


@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
def test_noise_is_mixed_at_the_requested_snr(snr: float) -> None:
    clean = tone()
    noise = np.random.default_rng(0).standard_normal(4000)  # shorter: tiled to length
    noisy = add_noise(clean, noise, snr)
    measured = 10 * np.log10(np.mean(clean**2) / np.mean((noisy - clean) ** 2))
    assert measured == pytest.approx(snr, abs=0.01)


def test_pink_noise_has_a_one_over_f_spectrum() -> None:
    noise = pink_noise(2**16, np.random.default_rng(1))
    power = np.abs(np.fft.rfft(noise)) ** 2
    freqs = np.arange(len(power))
    band = (freqs > 10) & (freqs < 20000)
    slope = np.polyfit(np.log(freqs[band]), np.log(power[band]), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.1)
    assert np.sqrt(np.mean(noise**2)) == pytest.approx(1.0, rel=1e-6)


def test_room_impulse_decays_sixty_db_over_rt60() -> None:
    rt60 = 0.4
    rir = room_impulse(rt60, SR, np.random.default_rng(2))
    assert rir[0] == 1.0 and len(rir) == int(rt60 * SR)
    energy = rir[1:] ** 2
    window = SR // 50
    early = energy[:window].mean()
    late = energy[-window:].mean()
    # Over (rt60 - one window) the level falls by 60 dB minus what that window accounts for.
    expected = 60 * (len(energy) - window) / len(energy)
    assert 10 * np.log10(early / late) == pytest.approx(expected, abs=4)


def test_augment_is_reproducible_per_seed_epoch_and_index() -> None:
    spec = WaveAugmentSpec(speeds=[0.9, 1.0, 1.1], gain_db=6, noise_prob=1.0,
                           noise_types=["white", "pink"], reverb_prob=0.5)  # fmt: skip
    wave = torch.from_numpy(tone(0.5))
    a = augment_wave(wave, SR, spec, clip_generator(1, 0, 5))
    b = augment_wave(wave, SR, spec, clip_generator(1, 0, 5))
    assert torch.equal(a, b)
    others = [augment_wave(wave, SR, spec, clip_generator(1, e, i)) for e, i in ((1, 5), (0, 6))]
    assert all(o.shape != a.shape or not torch.equal(o, a) for o in others)
    assert all(float(o.abs().max()) <= 1.0 for o in [a, *others])


def test_disabled_spec_changes_nothing() -> None:
    assert not WaveAugmentSpec().enabled
    wave = torch.from_numpy(tone(0.2))
    assert torch.equal(augment_wave(wave, SR, WaveAugmentSpec(), clip_generator(0, 0, 0)), wave)


def square(seconds: float = 0.5) -> np.ndarray:
    """A wave at +-0.25 in every sample: where it starts is plain to see."""
    return (0.25 * (-1.0) ** np.arange(int(seconds * SR))).astype(np.float32)


def test_silence_pads_surround_the_clip_quietly() -> None:
    wave = square()
    spec = WaveAugmentSpec(pad_prob=1.0, pad_seconds=0.3, pad_level_db=[-40.0, -40.0])
    lengths, zeros = [], 0
    for index in range(40):
        out = augment_wave(torch.from_numpy(wave), SR, spec, clip_generator(0, 0, index)).numpy()
        assert len(wave) <= len(out) <= len(wave) + 2 * 0.3 * SR
        start = int(np.flatnonzero(np.abs(out) > 0.1)[0])
        # the clip itself is untouched, somewhere inside
        assert np.array_equal(out[start : start + len(wave)], wave)
        pads = np.concatenate([out[:start], out[start + len(wave) :]])
        if len(pads) and not pads.any():
            zeros += 1
        elif len(pads) > 100:
            level = 10 * np.log10(np.mean(pads**2) / np.mean(wave**2))
            assert level == pytest.approx(-40, abs=1.5)
        lengths.append(len(out) - len(wave))
    assert 0 < zeros < 20  # one clip in five gets digital silence
    assert np.std(lengths) > 0.05 * SR  # drawn, not fixed


def test_noise_over_padded_clips_is_set_against_the_speech() -> None:
    wave = square()
    spec = WaveAugmentSpec(
        pad_prob=1.0, pad_seconds=1.0, noise_prob=1.0, noise_types=["white"], snr_db=[10.0, 10.0]
    )
    out = augment_wave(torch.from_numpy(wave), SR, spec, clip_generator(0, 0, 1)).numpy()
    assert len(out) > 2 * len(wave)
    window_power = np.mean(out[: len(out) // 160 * 160].reshape(-1, 160) ** 2, axis=1)
    pads = window_power[window_power < 0.02]  # the clip's windows hold 0.0625 + the noise
    assert len(pads) >= len(window_power) // 3
    # the pads carry noise at the clip's 10 dB SNR, not at the padded wave's lower average
    snr = 10 * np.log10(np.mean(wave**2) / np.mean(pads))
    assert snr == pytest.approx(10, abs=0.5)


@pytest.mark.parametrize(
    ("field_name", "value"),
    [("pad_prob", 1.5), ("noise_prob", -0.1), ("pad_seconds", -1.0), ("snr_db", [30.0, 5.0]),
     ("pad_level_db", [float("nan"), 0.0]), ("pad_level_db", [-10.0, 5.0]), ("rt60", [0.0, 0.5]),
     ("speeds", [0.0, 1.0]), ("speeds", [float("nan")]), ("gain_db", float("nan")),
     ("noise_types", []), ("noise_types", ["pinkk"])],
)  # fmt: skip
def test_bad_augmentation_values_name_their_field(field_name: str, value: object) -> None:
    WaveAugmentSpec().check()
    with pytest.raises(ValueError, match=f"^{field_name} must"):
        WaveAugmentSpec(**{field_name: value}).check()
