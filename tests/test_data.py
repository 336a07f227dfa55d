"""Tests for asr.data: padding, failed items, the duration batch sampler and filtering."""

import json
import random

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.augment import WaveAugmentSpec
from asr.data import (
    AugmentedLengths,
    DurationBatchSampler,
    SpeechDataset,
    batches_by_duration,
    collate,
    estimated_frames,
    filter_utterances,
)
from asr.features import FeatureSpec, LogMel
from asr.manifest import Utterance, read_manifest
from asr.text import CharTokenizer

RATE = 16000


# ------------------------------------------------------------------ collate


def test_collate_pads_inputs_and_targets():
    gen = torch.Generator().manual_seed(0)
    feats = [torch.randn(n, 4, generator=gen) + 5 for n in (5, 9, 2)]  # never zero by chance
    tokens = [torch.tensor([3, 1, 2]), torch.tensor([4]), torch.tensor([1, 1, 2, 2, 3])]
    items = [
        {"index": i, "input": f, "tokens": t}
        for i, (f, t) in enumerate(zip(feats, tokens, strict=True))
    ]
    batch = collate(items)
    assert len(batch) == 3
    assert batch.indices == [0, 1, 2]
    assert batch.failed == []
    assert batch.inputs.shape == (3, 9, 4)
    assert batch.input_lengths.tolist() == [5, 9, 2]
    assert batch.targets.shape == (3, 5)
    assert batch.target_lengths.tolist() == [3, 1, 5]
    for i in range(3):
        n, u = feats[i].shape[0], tokens[i].shape[0]
        assert torch.equal(batch.inputs[i, :n], feats[i])
        assert torch.count_nonzero(batch.inputs[i, n:]) == 0
        assert torch.equal(batch.targets[i, :u], tokens[i])
        assert torch.count_nonzero(batch.targets[i, u:]) == 0
    assert batch.targets.dtype == torch.long


def test_collate_waveforms_without_tokens():
    waves = [torch.ones(7), torch.full((3,), 0.5)]
    batch = collate([{"index": 4, "input": waves[0]}, {"index": 9, "input": waves[1]}])
    assert batch.indices == [4, 9]
    assert batch.inputs.tolist() == [[1.0] * 7, [0.5, 0.5, 0.5, 0, 0, 0, 0]]
    assert batch.input_lengths.tolist() == [7, 3]
    assert batch.targets.shape == (2, 0)
    assert batch.target_lengths.tolist() == [0, 0]


def test_collate_lists_failed_items_without_padding_them():
    items = [
        {"index": 0, "error": "m.jsonl:1: broken"},
        {"index": 1, "input": torch.ones(3, 2), "tokens": torch.tensor([1, 2])},
        {"index": 2, "error": "m.jsonl:3: broken too"},
    ]
    batch = collate(items)
    assert batch.indices == [1]
    assert batch.failed == [(0, "m.jsonl:1: broken"), (2, "m.jsonl:3: broken too")]
    assert batch.inputs.shape == (1, 3, 2)
    assert batch.targets.tolist() == [[1, 2]]


def test_collate_all_failed_gives_empty_batch():
    batch = collate([{"index": 5, "error": "bad"}])
    assert len(batch) == 0
    assert batch.failed == [(5, "bad")]
    assert batch.inputs.numel() == 0 and batch.targets.numel() == 0


def _tone(path, seconds):
    t = np.arange(int(seconds * RATE)) / RATE
    sf.write(path, (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), RATE)


def test_dataset_with_a_corrupt_file(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    _tone(audio / "good1.wav", 0.30)
    (audio / "broken.wav").write_bytes(np.random.default_rng(0).bytes(2000))
    _tone(audio / "good2.wav", 0.125)
    rows = [
        {"audio_filepath": "audio/good1.wav", "duration": 0.3, "text": "Ab, ba!"},
        {"audio_filepath": "audio/broken.wav", "duration": 0.1, "text": "ab"},
        {"audio_filepath": "audio/good2.wav", "duration": 0.125, "text": "b"},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    utts = read_manifest(manifest)
    tokenizer = CharTokenizer.from_texts(["ab ba", "b"])
    front = LogMel(FeatureSpec(n_mels=16))
    dataset = SpeechDataset(utts, front, tokenizer)
    assert len(dataset) == 3

    items = [dataset[i] for i in range(3)]
    assert "error" in items[1] and "input" not in items[1]
    assert f"{manifest}:2" in items[1]["error"]
    assert "broken.wav" in items[1]["error"]

    batch = collate(items)
    assert batch.indices == [0, 2]
    assert [index for index, _ in batch.failed] == [1]
    frames = [int(0.3 * RATE) // 160 + 1, int(0.125 * RATE) // 160 + 1]  # 31 and 13
    assert batch.input_lengths.tolist() == frames
    assert batch.inputs.shape == (2, max(frames), 16)
    assert torch.count_nonzero(batch.inputs[1, frames[1] :]) == 0
    assert batch.target_lengths.tolist() == [len("ab ba"), len("b")]
    assert tokenizer.decode(batch.targets[0].tolist()) == "ab ba"
    assert batch.targets[1].tolist() == [tokenizer.encode("b")[0], 0, 0, 0, 0]


def test_dataset_returns_waveforms_without_features(tmp_path):
    _tone(tmp_path / "x.wav", 0.1)
    utt = Utterance(str(tmp_path / "x.wav"), 0.1, "x", origin="m:1")
    item = SpeechDataset([utt], None, None, sample_rate=8000)[0]
    assert item["input"].shape == (800,)
    assert "tokens" not in item


def test_dataset_pads_clips_with_silence(tmp_path):
    _tone(tmp_path / "x.wav", 0.1)
    utt = Utterance(str(tmp_path / "x.wav"), 0.1, "x", origin="m:1")
    plain = SpeechDataset([utt], None, None, sample_rate=8000)[0]["input"]
    padded = SpeechDataset([utt], None, None, sample_rate=8000, pad_seconds=0.05)[0]["input"]
    assert padded.shape == (800 + 2 * 400,)
    assert not padded[:400].any() and not padded[-400:].any()
    assert torch.equal(padded[400:-400], plain)
    with pytest.raises(ValueError, match="pad_seconds must be finite and >= 0, got -0.1"):
        SpeechDataset([utt], None, None, sample_rate=8000, pad_seconds=-0.1)


def test_augmented_clips_last_as_the_sampler_plans(tmp_path):
    # the sampler sizes batches by AugmentedLengths: the workers must make clips that long
    durations = [0.3, 1.1, 0.7]
    for i, seconds in enumerate(durations):
        _tone(tmp_path / f"{i}.wav", seconds)
    utts = [Utterance(str(tmp_path / f"{i}.wav"), d, "x") for i, d in enumerate(durations)]
    spec = WaveAugmentSpec(speeds=[0.9, 1.0, 1.1], pad_prob=0.7, pad_seconds=0.5, gain_db=3)
    dataset = SpeechDataset(utts, None, None, sample_rate=RATE, augment=spec, seed=4)
    lengths = AugmentedLengths(durations, spec)
    seen = set()
    for epoch in range(3):
        dataset.epoch = epoch
        for key in range(6):  # keys 3..5 are second copies (weighted sampling)
            planned = lengths(4, epoch, key)
            assert len(dataset[key]["input"]) / RATE == pytest.approx(planned, abs=2e-3)
            seen.add(round(planned, 3))
    assert len(seen) > 12  # drawn per clip and epoch, not fixed


# ------------------------------------------------------------------ sampler


def random_durations(n=80, seed=0):
    rng = random.Random(seed)
    return [round(rng.uniform(0.4, 6.0), 3) for _ in range(n)]


def epoch_batches(durations, epoch=0, skip=0, **kwargs):
    sampler = DurationBatchSampler(durations, **{"max_batch_seconds": 15.0, **kwargs})
    sampler.set_epoch(epoch, skip=skip)
    return list(sampler)


@pytest.mark.parametrize("epoch", [0, 1, 5])
def test_every_index_once_and_cap_respected(epoch):
    durations = random_durations()
    batches = epoch_batches(durations, epoch=epoch)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(durations)))
    for batch in batches:
        assert len(batch) * max(durations[i] for i in batch) <= 15.0


def test_single_long_utterance_gets_its_own_batch():
    durations = [1.0, 20.0, 2.0, 1.5]
    batches = epoch_batches(durations, max_batch_seconds=6.0)
    assert [1] in batches
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3]
    for batch in batches:
        if len(batch) > 1:
            assert len(batch) * max(durations[i] for i in batch) <= 6.0


def test_max_batch_size():
    durations = [1.0] * 10
    batches = epoch_batches(durations, max_batch_seconds=100.0, max_batch_size=3)
    assert sorted(len(b) for b in batches) == [1, 3, 3, 3]


def test_first_epoch_sorted_ascending():
    durations = random_durations(seed=1)
    batches = epoch_batches(durations, epoch=0, sorted_first_epoch=True)
    flat = [durations[i] for batch in batches for i in batch]
    assert flat == sorted(flat)


def test_first_epoch_shuffled_without_sorted_first_epoch():
    durations = random_durations(seed=1)
    batches = epoch_batches(durations, epoch=0, sorted_first_epoch=False)
    longest = [max(durations[i] for i in b) for b in batches]
    assert longest != sorted(longest)


def test_no_shuffle_is_sorted_every_epoch():
    durations = random_durations(seed=2)
    for epoch in (0, 3):
        flat = [durations[i] for b in epoch_batches(durations, epoch, shuffle=False) for i in b]
        assert flat == sorted(flat)
    assert [i for b in batches_by_duration(durations, 15.0) for i in b] == sorted(
        range(len(durations)), key=durations.__getitem__
    )


def test_later_epochs_differ_but_are_reproducible():
    durations = random_durations(seed=3)
    e1 = epoch_batches(durations, epoch=1, seed=0)
    assert e1 == epoch_batches(durations, epoch=1, seed=0)
    assert e1 != epoch_batches(durations, epoch=2, seed=0)
    assert e1 != epoch_batches(durations, epoch=1, seed=1)
    assert e1 != epoch_batches(durations, epoch=0, seed=0)


def test_ties_are_broken_randomly_per_epoch():
    durations = [2.0] * 12  # all equal: only the tie-breaking decides the membership
    a = epoch_batches(durations, epoch=1, max_batch_seconds=6.0)
    b = epoch_batches(durations, epoch=2, max_batch_seconds=6.0)
    assert {frozenset(x) for x in a} != {frozenset(x) for x in b}


@pytest.mark.parametrize(("epoch", "skip"), [(0, 0), (0, 3), (2, 1), (2, 5)])
def test_skip_yields_the_remaining_batches(epoch, skip):
    durations = random_durations(seed=4)
    full = epoch_batches(durations, epoch=epoch)
    assert len(full) > skip
    assert epoch_batches(durations, epoch=epoch, skip=skip) == full[skip:]


def test_resume_from_state_dict():
    durations = random_durations(seed=5)
    sampler = DurationBatchSampler(durations, 15.0, seed=9)
    sampler.set_epoch(3)
    full = list(sampler)
    state = sampler.state_dict(consumed=4)
    resumed = DurationBatchSampler(durations, 15.0, seed=0)
    resumed.set_epoch(3)
    assert list(resumed) != full  # drawn, and cached, with its own seed first
    resumed.load_state_dict(state)
    assert list(resumed) == full[4:]


def test_two_replicas_even_batch_count_are_disjoint_and_cover():
    # 12 equal durations of 1 s with a 3 s cap: exactly 4 batches of 3.
    durations = [1.0] * 12
    full = epoch_batches(durations, epoch=1, max_batch_seconds=3.0)
    assert len(full) == 4
    shards = [
        epoch_batches(durations, epoch=1, max_batch_seconds=3.0, num_replicas=2, rank=r)
        for r in range(2)
    ]
    assert len(shards[0]) == len(shards[1]) == 2
    as_sets = [{tuple(b) for b in shard} for shard in shards]
    assert not as_sets[0] & as_sets[1]
    assert as_sets[0] | as_sets[1] == {tuple(b) for b in full}


def test_two_replicas_random_durations():
    durations = random_durations(n=101, seed=6)
    for epoch in (0, 1):
        full = epoch_batches(durations, epoch=epoch)
        shards = [epoch_batches(durations, epoch=epoch, num_replicas=2, rank=r) for r in range(2)]
        assert len(shards[0]) == len(shards[1]) == -(-len(full) // 2)
        union = [tuple(b) for shard in shards for b in shard]
        assert set(union) == {tuple(b) for b in full}
        if len(full) % 2 == 0:
            assert len(union) == len(set(union))  # disjoint
        else:
            assert len(union) == len(set(union)) + 1  # one batch repeated to even out


def test_two_replicas_odd_batch_count_have_equal_length():
    durations = [1.0] * 15  # 5 batches of 3
    shards = [
        epoch_batches(durations, epoch=1, max_batch_seconds=3.0, num_replicas=2, rank=r)
        for r in range(2)
    ]
    assert len(shards[0]) == len(shards[1]) == 3
    covered = {i for shard in shards for b in shard for i in b}
    assert covered == set(range(15))


def test_len_matches_iteration():
    durations = random_durations(seed=7)
    sampler = DurationBatchSampler(durations, 15.0)
    sampler.set_epoch(2)
    assert len(sampler) == len(list(sampler))


def test_bad_cap():
    with pytest.raises(ValueError):
        DurationBatchSampler([1.0], 0)
    with pytest.raises(ValueError, match="large_batch"):
        DurationBatchSampler([1.0], 5.0, large_batch_seconds=-1.0)


def test_large_batches_from_their_epoch_on():
    durations = random_durations(n=300, seed=4)
    sampler = DurationBatchSampler(
        durations, 10.0, seed=2, large_batch_seconds=30.0, large_batch_epoch=2
    )
    sizes = {}
    for epoch in range(4):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(len(durations)))
        cap = 10.0 if epoch < 2 else 30.0
        assert all(len(b) * max(durations[i] for i in b) <= cap for b in batches)
        assert sampler.epoch_length(epoch) == len(batches)
        sizes[epoch] = len(batches)
    # three times the cap: about a third of the batches (sorted durations pack evenly)
    assert sizes[2] < 0.45 * sizes[1] and sizes[3] < 0.45 * sizes[0]
    sampler.set_epoch(1, skip=3)
    assert sampler.epoch_length(3) == sizes[3] and len(list(sampler)) == sizes[1] - 3


def test_weights_draw_a_fresh_fraction_each_epoch_and_repeat_whole_copies():
    # 0..199 weighted 0.25 (a "large synthetic corpus"), 200..219 weighted 2.0, the rest 1
    durations = [1.0 + (i % 7) * 0.3 for i in range(240)]
    weights = [0.25] * 200 + [2.0] * 20 + [1.0] * 20
    drawn = []
    for epoch in range(4):
        batches = epoch_batches(durations, epoch=epoch, weights=weights)
        # the second copy of utterance i is index i + 240: its own augmentation draws, and
        # never in the batch of the first copy
        assert all(len({i % 240 for i in b}) == len(b) for b in batches)
        assert {i // 240 for b in batches for i in b} == {0, 1}
        flat = [i % 240 for b in batches for i in b]
        counts = {i: flat.count(i) for i in set(flat)}
        assert all(counts[i] == 2 for i in range(200, 220))
        assert all(counts[i] == 1 for i in range(220, 240))
        light = {i for i in flat if i < 200}
        assert 30 <= len(light) <= 70 and all(counts[i] == 1 for i in light)
        drawn.append(light)
    assert drawn[0] != drawn[1]  # a different subset every epoch
    assert drawn[1] == {  # ... and reproducible, so resuming redraws the same one
        i % 240 for b in epoch_batches(durations, epoch=1, weights=weights) for i in b if i < 200
    }
    assert len(set().union(*drawn)) > 100


def test_batches_are_sized_by_the_augmented_lengths():
    # speed perturbation and silence pads: sorted and capped by the recorded durations, a
    # batch is as long as its longest pads, and its frames under the cap no longer
    durations = random_durations(n=400, seed=5)
    spec = WaveAugmentSpec(speeds=[0.9, 1.0, 1.1], pad_prob=0.5, pad_seconds=0.8)
    lengths = AugmentedLengths(durations, spec)

    def padded(batches, epoch):
        return [len(b) * max(lengths(3, epoch, i) for i in b) for b in batches]

    for epoch in (0, 1):
        speech = sum(lengths(3, epoch, i) for i in range(len(durations)))
        exact = epoch_batches(durations, epoch=epoch, seed=3, lengths=lengths)
        plain = epoch_batches(durations, epoch=epoch, seed=3)
        assert sorted(i for b in exact for i in b) == list(range(len(durations)))
        assert max(padded(exact, epoch)) <= 15.0 < max(padded(plain, epoch))
        assert speech / sum(padded(exact, epoch)) > 0.95
        assert speech / sum(padded(plain, epoch)) < 0.9
    assert lengths(3, 0, 7) == lengths(3, 0, 7) != lengths(3, 1, 7)  # per epoch, reproducibly


def test_bad_weights():
    with pytest.raises(ValueError, match="weights for"):
        DurationBatchSampler([1.0, 2.0], 10.0, weights=[1.0])
    with pytest.raises(ValueError, match=">= 0"):
        DurationBatchSampler([1.0], 10.0, weights=[-1.0])


# ------------------------------------------------------------------ filtering


def utt(text, duration):
    return Utterance("unused.wav", duration, text, origin=f"m:{text}")


def test_estimated_frames():
    # round(0.0123 * 16000) = 197 samples -> 197 // 160 + 1 = 2 frames
    assert estimated_frames(0.0123, 16000, 160) == 2
    assert estimated_frames(1.0, 16000, 160) == 101
    assert estimated_frames(1.0, 8000, 80) == 101


def test_filter_utterances_counts_each_reason():
    tokenizer = CharTokenizer.from_texts(["ab"])  # blank, space, a, b
    # Durations -> frames: 0.01 s = 160 samples -> 2 frames; 0.02 s -> 3 frames.
    utts = [
        utt("ab", 5.0),  # too_long (max 4 s)
        utt("ab", 0.004),  # too_short (min 0.005 s)
        utt("ab xyz", 1.0),  # unknown_chars
        utt("?! ...", 1.0),  # empty_text after normalisation
        utt("AA", 0.01),  # "aa" needs a, blank, a = 3 frames, has 2: too_short_for_text
        utt("ab", 0.01),  # needs 2, has 2: kept
        utt("a a", 0.02),  # needs 3 (no repeated pair), has 3: kept
        utt("aa", 0.02),  # needs 3, has 3: kept
        utt("abba", 0.02),  # needs 4 + 1 repeat = 5, has 3: too_short_for_text
    ]
    kept, counts = filter_utterances(
        utts,
        tokenizer,
        lambda frames: frames,
        sample_rate=16000,
        hop_length=160,
        max_duration=4.0,
        min_duration=0.005,
    )
    assert counts == {
        "too_long": 1,
        "too_short": 1,
        "unknown_chars": 1,
        "empty_text": 1,
        "too_short_for_text": 2,
    }
    assert kept == [5, 6, 7]


def test_filter_uses_model_output_frames():
    tokenizer = CharTokenizer.from_texts(["ab"])

    def halve(frames):  # a stride-2 front end: ceil(frames / 2)
        return (frames + 1) // 2

    # "aa" needs 3 outputs. 0.03 s -> 4 frames -> 2 outputs (dropped);
    # 0.04 s -> 5 frames -> 3 outputs (kept).
    kept, counts = filter_utterances(
        [utt("aa", 0.03), utt("aa", 0.04)], tokenizer, halve, 16000, 160, max_duration=10.0
    )
    assert counts["too_short_for_text"] == 1
    assert kept == [1]
