"""Tests for asr.features: log-mel against librosa, batching, normalisation and SpecAugment."""

import librosa
import numpy as np
import pytest
import torch

from asr.features import (
    FeatureSpec,
    LogMel,
    RunningStats,
    SpecAugmentSpec,
    frequency_warp,
    lengths_mask,
    num_frames,
    slaney_hz,
    slaney_mel,
    spec_augment,
)

RATE = 16000
HOP = 160


def noisy_tones(num_samples, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / RATE
    wave = (
        0.05 * rng.standard_normal(num_samples)
        + 0.3 * np.sin(2 * np.pi * 440 * t)
        + 0.2 * np.sin(2 * np.pi * 3000 * t + 1.0)
        + 0.1 * np.sin(2 * np.pi * 123 * t)
    )
    return wave.astype(np.float32)


def librosa_log_mel(wave):
    mel = librosa.feature.melspectrogram(
        y=wave.astype(np.float64),
        sr=RATE,
        n_fft=400,
        hop_length=160,
        win_length=400,
        window="hann",
        center=True,
        pad_mode="constant",
        power=2.0,
        n_mels=80,
        htk=False,
        norm="slaney",
    )
    return np.log(mel + 1e-6).T  # [T, n_mels]


def test_spec_defaults():
    spec = FeatureSpec()
    assert (spec.win_length, spec.hop_length, spec.fft_size) == (400, 160, 400)
    assert FeatureSpec(sample_rate=8000).hop_length == 80


@pytest.mark.parametrize("num_samples", [3 * RATE + 37, 2 * RATE])
def test_log_mel_matches_librosa(num_samples):
    wave = noisy_tones(num_samples)
    expected = librosa_log_mel(wave)
    ours = LogMel(FeatureSpec(normalize="none")).log_mel(torch.from_numpy(wave)[None])[0]
    assert ours.dtype == torch.float32
    assert tuple(ours.shape) == expected.shape == (num_samples // HOP + 1, 80)
    diff = float(np.abs(ours.double().numpy() - expected).max())
    assert diff <= 1e-4, f"max abs difference to librosa is {diff:.3g} (limit 1e-4)"


@pytest.mark.parametrize("num_samples", [1, 159, 160, 161, 400, 16000, 16001])
def test_frame_count(num_samples):
    feats = LogMel(FeatureSpec(normalize="none")).log_mel(torch.zeros(1, num_samples))
    assert feats.shape[1] == num_samples // 160 + 1
    assert num_frames(num_samples, 160) == num_samples // 160 + 1


def test_digital_silence_is_log_floor():
    feats = LogMel(FeatureSpec(normalize="none")).log_mel(torch.zeros(1, 1600))
    torch.testing.assert_close(feats, torch.full_like(feats, float(np.log(1e-6))))


@pytest.mark.parametrize("normalize", ["none", "utterance"])
def test_batch_equals_single_clips(normalize):
    lengths = [8000, 5123, 2401]
    clips = [torch.from_numpy(noisy_tones(n, seed=i)) for i, n in enumerate(lengths)]
    batch = torch.zeros(3, max(lengths))
    for i, clip in enumerate(clips):
        batch[i, : clip.shape[0]] = clip
    front = LogMel(FeatureSpec(normalize=normalize))
    feats, frames = front(batch, torch.tensor(lengths))
    assert frames.tolist() == [n // 160 + 1 for n in lengths]
    assert feats.shape == (3, max(lengths) // 160 + 1, 80)
    for i, clip in enumerate(clips):
        alone, alone_frames = front(clip[None], torch.tensor([clip.shape[0]]))
        n = int(alone_frames[0])
        assert n == int(frames[i]) == alone.shape[1]
        diff = float((feats[i, :n] - alone[0]).abs().max())
        assert diff <= 1e-5, f"clip {i}: batched vs alone differ by {diff:.3g}"
        assert torch.count_nonzero(feats[i, n:]) == 0


def test_utterance_normalisation_statistics():
    lengths = [9000, 4000]
    batch = torch.zeros(2, 9000)
    for i, n in enumerate(lengths):
        batch[i, :n] = torch.from_numpy(noisy_tones(n, seed=10 + i))
    feats, frames = LogMel(FeatureSpec(normalize="utterance"))(batch, torch.tensor(lengths))
    for i in range(2):
        valid = feats[i, : int(frames[i])].double()
        torch.testing.assert_close(
            valid.mean(0), torch.zeros(80, dtype=torch.float64), atol=1e-4, rtol=0
        )
        # Population std (the normaliser divides by the frame count); eps 1e-5 costs < 1e-3.
        std = valid.std(0, unbiased=False)
        torch.testing.assert_close(std, torch.ones(80, dtype=torch.float64), atol=2e-3, rtol=0)


def test_global_normalisation_uses_set_stats():
    wave = torch.from_numpy(noisy_tones(6000, seed=3))[None]
    lengths = torch.tensor([6000])
    raw, _ = LogMel(FeatureSpec(normalize="none"))(wave, lengths)
    front = LogMel(FeatureSpec(normalize="global"))
    default, _ = front(wave, lengths)
    torch.testing.assert_close(default, raw)  # zero mean / unit std until stats are set
    mean = torch.linspace(-12.0, -2.0, 80)
    std = torch.linspace(0.5, 3.0, 80)
    front.set_global_stats(mean, std)
    torch.testing.assert_close(front.mean, mean)
    torch.testing.assert_close(front.std, std)
    feats, _ = front(wave, lengths)
    torch.testing.assert_close(feats, (raw - mean) / std)
    # The statistics are buffers, hence travel in a state_dict.
    assert {"mean", "std"} <= set(front.state_dict())


def test_global_stats_std_is_floored():
    front = LogMel(FeatureSpec(normalize="global", n_mels=4))
    front.set_global_stats(torch.zeros(4), torch.tensor([0.0, 1e-9, 0.5, 2.0]))
    assert torch.all(front.std > 0)
    torch.testing.assert_close(front.std[2:], torch.tensor([0.5, 2.0]))


def test_bad_normalize_mode():
    with pytest.raises(ValueError, match="normalize"):
        LogMel(FeatureSpec(normalize="per-speaker"))


def test_lengths_mask():
    mask = lengths_mask(torch.tensor([3, 0, 5]), 5)
    expected = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected)


def test_running_stats_matches_torch():
    gen = torch.Generator().manual_seed(0)
    chunks = [torch.randn(n, 6, generator=gen) * 3 + 5 for n in (7, 1, 30, 0, 12)]
    stats = RunningStats(6)
    for chunk in chunks:
        stats.update(chunk)
    mean, std = stats.result()
    everything = torch.cat(chunks).double()
    assert stats.count == everything.shape[0]
    torch.testing.assert_close(mean.double(), everything.mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(std.double(), everything.std(0), atol=1e-6, rtol=0)


def test_running_stats_large_offset_is_stable():
    # Naive sum-of-squares in float32 would lose the small variance under a large mean.
    gen = torch.Generator().manual_seed(1)
    chunks = [
        torch.randn(50, 3, generator=gen, dtype=torch.float64) * 0.01 + 1000 for _ in range(4)
    ]
    stats = RunningStats(3)
    for chunk in chunks:
        stats.update(chunk)
    _, std = stats.result()
    torch.testing.assert_close(std.double(), torch.cat(chunks).std(0), atol=1e-5, rtol=1e-3)


# ------------------------------------------------------------------ SpecAugment


def _augment_inputs(lengths=(60, 37, 12), n_mels=20):
    gen = torch.Generator().manual_seed(7)
    lengths = torch.tensor(lengths)
    feats = torch.rand(len(lengths), int(lengths.max()), n_mels, generator=gen) + 0.5
    feats = feats * lengths_mask(lengths, feats.shape[1])[:, :, None]  # padded frames are zeros
    return feats, lengths


SPEC = SpecAugmentSpec(freq_masks=2, freq_width=5, time_masks=2, time_width=0.2, time_width_max=8)


def test_spec_augment_only_zeros_values():
    feats, lengths = _augment_inputs()
    out = spec_augment(feats, lengths, SPEC, torch.Generator().manual_seed(0))
    assert out.shape == feats.shape
    changed = out != feats
    assert changed.any()  # something was masked
    assert torch.all(out[changed] == 0)


def test_spec_augment_keeps_padding_zero_and_bounds_time_masks():
    feats, lengths = _augment_inputs()
    for seed in range(20):
        out = spec_augment(feats, lengths, SPEC, torch.Generator().manual_seed(seed))
        for b, length in enumerate(lengths.tolist()):
            assert torch.count_nonzero(feats[b, length:]) == 0
            assert torch.count_nonzero(out[b, length:]) == 0
            # Frequency masks cover at most 2 x 5 of 20 bands, so a fully zero frame is a time mask.
            masked_steps = int((out[b, :length] == 0).all(dim=1).sum())
            max_width = min(int(length * SPEC.time_width), SPEC.time_width_max)
            assert masked_steps <= SPEC.time_masks * max_width


def test_spec_augment_time_masks_stay_inside_lengths():
    # With non-zero "garbage" past each length a time mask there would show as zeroed frames.
    lengths = torch.tensor([50, 20, 9])
    feats = torch.ones(3, 50, 16)
    spec = SpecAugmentSpec(freq_masks=0, time_masks=3, time_width=0.3, time_width_max=10)
    for seed in range(20):
        out = spec_augment(feats, lengths, spec, torch.Generator().manual_seed(seed))
        for b, length in enumerate(lengths.tolist()):
            assert torch.all(out[b, length:] == 1)


def test_spec_augment_frequency_masks_bounded():
    feats = torch.ones(4, 10, 30)
    lengths = torch.full((4,), 10)
    spec = SpecAugmentSpec(freq_masks=2, freq_width=4, time_masks=0)
    for seed in range(20):
        out = spec_augment(feats, lengths, spec, torch.Generator().manual_seed(seed))
        zero_bands = (out == 0).all(dim=1)  # [B, M]: a band masked over all time
        assert torch.equal(zero_bands, (out == 0).any(dim=1))  # masks span whole utterances
        assert int(zero_bands.sum(dim=1).max()) <= 2 * 4


def test_spec_augment_is_reproducible_with_a_seeded_generator():
    feats, lengths = _augment_inputs()
    first = spec_augment(feats, lengths, SPEC, torch.Generator().manual_seed(123))
    again = spec_augment(feats, lengths, SPEC, torch.Generator().manual_seed(123))
    other = spec_augment(feats, lengths, SPEC, torch.Generator().manual_seed(124))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


# ------------------------------------------------------------------ frequency warp


def test_slaney_mel_matches_librosa_and_inverts():
    hz = torch.tensor([0.0, 250.0, 999.0, 1000.0, 1001.0, 3000.0, 8000.0])
    assert np.allclose(slaney_mel(hz).numpy(), librosa.hz_to_mel(hz.numpy()), atol=1e-4)
    assert torch.allclose(slaney_hz(slaney_mel(hz)), hz, atol=1e-2)


@pytest.mark.parametrize("tone_hz", [600.0, 1000.0, 2500.0])
@pytest.mark.parametrize("factor", [0.85, 1.2])
def test_frequency_warp_moves_a_tone_by_its_factor(tone_hz, factor):
    t = np.arange(RATE) / RATE
    wave = torch.tensor(np.sin(2 * np.pi * tone_hz * t), dtype=torch.float32)[None]
    feats, _ = LogMel(FeatureSpec(normalize="none"))(wave, torch.tensor([RATE]))
    centres = librosa.mel_frequencies(82, fmin=0, fmax=RATE / 2)[1:-1]
    warped = frequency_warp(feats, torch.tensor([factor]), 0.0, RATE / 2)
    peak = centres[int(warped[0, 50].argmax())]
    # the bands are ~4-10% wide here: the peak lands in the band nearest tone x factor
    assert abs(peak - tone_hz * factor) < 0.1 * tone_hz * factor
    assert abs(centres[int(feats[0, 50].argmax())] - tone_hz) < 0.1 * tone_hz


def test_frequency_warp_keeps_identity_padding_and_per_utterance_factors():
    feats, lengths = _augment_inputs(n_mels=40)
    same = frequency_warp(feats, torch.ones(3), 0.0, 8000.0)
    assert torch.allclose(same, feats, atol=1e-5)
    warped = frequency_warp(feats, torch.tensor([0.9, 1.0, 1.1]), 0.0, 8000.0)
    assert torch.allclose(warped[1], feats[1], atol=1e-5)
    assert not torch.allclose(warped[0], feats[0]) and not torch.allclose(warped[2], feats[2])
    for b, length in enumerate(lengths.tolist()):
        assert torch.count_nonzero(warped[b, length:]) == 0
    # interpolation between neighbouring bands: no value outside the input's range
    assert warped.min() >= feats.min() - 1e-6 and warped.max() <= feats.max() + 1e-6


def test_spec_augment_spec_check_names_the_field():
    SpecAugmentSpec(freq_warp=0.2).check()
    with pytest.raises(ValueError, match="^freq_warp must be in"):
        SpecAugmentSpec(freq_warp=0.6).check()
    with pytest.raises(ValueError, match="^time_width must be in"):
        SpecAugmentSpec(time_width=1.5).check()


def test_long_clips_and_big_batches_are_framed_in_pieces_exactly():
    """The CPU computes CPU_PIECE_FRAMES at a time; the result equals one centred STFT."""
    from asr import features as features_module

    torch.manual_seed(3)
    extract = LogMel(FeatureSpec())
    for shape in ((1, 16000 * 61 + 37), (5, 16000 * 9 + 5)):
        wave = torch.randn(*shape) * 0.1
        pieces = extract.log_mel(wave)
        saved = features_module.CPU_PIECE_FRAMES
        features_module.CPU_PIECE_FRAMES = 10**9  # one piece
        try:
            whole = extract.log_mel(wave)
        finally:
            features_module.CPU_PIECE_FRAMES = saved
        assert pieces.shape == whole.shape == (shape[0], 1 + shape[1] // 160, 80)
        assert (pieces - whole).abs().max() < 1e-4
