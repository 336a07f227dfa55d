"""Datasets, padded batches and the duration-bucketed batch sampler.

A dataset item is a dict ``{"index", "input", "tokens"}`` where ``input`` is either
log-mel features [T, n_mels] (computed per clip in a data-loader worker: fastest on CPU)
or the waveform [N] (when the training device extracts features for the whole batch).
:func:`collate` pads them into a :class:`Batch` whose tensors travel with their lengths.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from asr.audio import AudioError, load_audio
from asr.augment import WaveAugmentSpec, augment_wave, clip_generator, plan_clip
from asr.feature_cache import FeatureCache
from asr.features import LogMel, num_frames
from asr.manifest import Utterance
from asr.text import Tokenizer, normalize_text


@dataclass
class Batch:
    """A padded batch. ``inputs`` is [B, T, n_mels] features or [B, N] waveforms."""

    indices: list[int]
    inputs: torch.Tensor
    input_lengths: torch.Tensor  # [B] frames (features) or samples (waveforms)
    targets: torch.Tensor  # [B, U] token ids, zero padded
    target_lengths: torch.Tensor  # [B]
    failed: list[tuple[int, str]] = field(default_factory=list)  # (index, error) skipped

    def __len__(self) -> int:
        return len(self.indices)

    def pin_memory(self) -> Batch:
        self.inputs = self.inputs.pin_memory()
        self.targets = self.targets.pin_memory()
        return self


class SpeechDataset(Dataset):
    """Utterances -> {"index", "input", "tokens"}; unreadable audio gives an ``error`` item.

    ``features=None`` returns waveforms at ``sample_rate`` for batched extraction elsewhere;
    ``tokenizer=None`` returns no tokens (decoding only). With a ``cache``, features of clips
    without waveform augmentation are read from it, or computed and stored there.
    ``pad_seconds``: digital silence added before and after every clip (after augmentation),
    the evaluation's check of how a model copes with pauses its corpora cut away.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        features: LogMel | None,
        tokenizer: Tokenizer | None = None,
        sample_rate: int = 16000,
        augment: WaveAugmentSpec | None = None,
        seed: int = 0,
        cache: FeatureCache | None = None,
        pad_seconds: float = 0.0,
    ):
        self.utterances = utterances
        self.features = features
        self.tokenizer = tokenizer
        self.sample_rate = features.spec.sample_rate if features is not None else sample_rate
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed = seed
        if not 0 <= pad_seconds < math.inf:
            raise ValueError(f"pad_seconds must be finite and >= 0, got {pad_seconds}")
        self.pad = round(pad_seconds * self.sample_rate)
        exact = self.augment is None and self.pad == 0  # what the cache holds
        self.cache = cache if features is not None and exact else None
        self.epoch = 0  # set by the trainer: augmentation draws depend on (seed, epoch, index)

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> dict:
        # index + k * len(self) is the k-th extra copy of an utterance (weighted sampling):
        # the same audio with its own augmentation draws
        key, index = index, index % len(self.utterances)
        utt = self.utterances[index]
        item: dict = {"index": index}
        if self.tokenizer is not None:
            item["tokens"] = torch.tensor(self.tokenizer.encode(normalize_text(utt.text)))
        cached = self.cache.load(utt) if self.cache is not None else None
        if cached is not None:
            return {**item, "input": cached}
        try:
            wave = load_audio(
                utt.audio_filepath,
                self.sample_rate,
                byte_range=utt.byte_range,
                expected_seconds=utt.duration,
            )
        except AudioError as exc:
            # A bad file must not kill a long run: the batch reports it and training counts it.
            return {"index": index, "error": f"{utt.origin}: {exc}"}
        if self.augment is not None:
            rng = clip_generator(self.seed, self.epoch, key)
            plan = plan_clip(self.augment, self.seed, self.epoch, key)  # as the sampler drew
            wave = augment_wave(
                wave, self.sample_rate, self.augment, rng, lambda n: self._babble(n, rng), plan
            )
        if self.pad:
            wave = torch.nn.functional.pad(wave, (self.pad, self.pad))
        if self.features is None:
            return {**item, "input": wave}
        with torch.no_grad():
            feats, _ = self.features(wave[None], torch.tensor([wave.shape[0]]))
        if self.cache is not None:
            self.cache.save(utt, feats[0])
        return {**item, "input": feats[0]}

    def _babble(self, length: int, rng) -> np.ndarray:
        """A few other utterances summed: speech-like background noise of ``length`` samples."""
        total = np.zeros(length, dtype=np.float32)
        for other in rng.choice(
            len(self.utterances), size=min(3, len(self.utterances)), replace=False
        ):
            source = self.utterances[int(other)]
            try:
                voice = load_audio(
                    source.audio_filepath,
                    self.sample_rate,
                    byte_range=source.byte_range,
                    expected_seconds=source.duration,
                ).numpy()
            except AudioError:
                continue
            voice = np.tile(voice, length // max(voice.shape[0], 1) + 1)[:length]
            total += voice / max(float(np.sqrt(np.mean(voice**2))), 1e-6)
        return total


def pad_stack(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad tensors [L_i, ...] along dim 0 -> ([B, max L, ...], lengths [B])."""
    lengths = torch.tensor([t.shape[0] for t in tensors], dtype=torch.long)
    out = tensors[0].new_zeros(
        (len(tensors), int(lengths.max()) if len(tensors) else 0, *tensors[0].shape[1:])
    )
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
    return out, lengths


def collate(items: list[dict]) -> Batch:
    """Pad a list of dataset items into a :class:`Batch` (failed items are listed, not padded)."""
    good = [it for it in items if "error" not in it]
    failed = [(it["index"], it["error"]) for it in items if "error" in it]
    if not good:
        empty = torch.zeros(0, dtype=torch.long)
        return Batch(
            [], torch.zeros(0, 0), empty, torch.zeros(0, 0, dtype=torch.long), empty, failed
        )
    inputs, input_lengths = pad_stack([it["input"] for it in good])
    if "tokens" in good[0]:
        targets, target_lengths = pad_stack([it["tokens"] for it in good])
    else:
        targets = torch.zeros(len(good), 0, dtype=torch.long)
        target_lengths = torch.zeros(len(good), dtype=torch.long)
    return Batch(
        [it["index"] for it in good], inputs, input_lengths, targets, target_lengths, failed
    )


def estimated_frames(duration: float, sample_rate: int, hop_length: int) -> int:
    """Feature frames of a clip of ``duration`` seconds."""
    return num_frames(int(round(duration * sample_rate)), hop_length)


class AugmentedLengths:
    """``(seed, epoch, key) -> seconds``: how long utterance copy ``key`` (see
    :class:`SpeechDataset`) lasts in ``epoch`` once its speed and silence pads are applied,
    drawn as the data-loader workers seeded with ``seed`` will draw them."""

    def __init__(self, durations: Sequence[float], spec: WaveAugmentSpec):
        self.durations = durations  # the caller's sequence, not a copy
        self.spec = spec

    def __call__(self, seed: int, epoch: int, key: int) -> float:
        duration = self.durations[key % len(self.durations)]
        return plan_clip(self.spec, seed, epoch, key).seconds(duration)


class DurationBatchSampler(Sampler[list[int]]):
    """Batches of similar duration whose padded length sum stays under a cap.

    Utterances are sorted by duration (ties broken randomly per epoch), cut into batches whose
    ``size * longest`` stays under ``max_batch_seconds`` (padding is what costs memory), then
    the batch order is shuffled per epoch. ``lengths(seed, epoch, key)``, when given, is the
    duration a clip will have in that epoch under the sampler's seed (e.g.
    :class:`AugmentedLengths`): with speed perturbation and silence pads, sorting and capping
    by the durations as recorded left a quarter of the real recipe's frames padding. With
    ``sorted_first_epoch`` the first epoch runs shortest batches first, which steadies early
    CTC training. Under DDP every rank draws the same batch list and takes every
    ``num_replicas``-th batch. With ``large_batch_seconds`` the cap rises to that from epoch
    ``large_batch_epoch`` on.

    Resumable: :meth:`state_dict` records the epoch and how many batches were consumed.
    """

    def __init__(
        self,
        durations: Sequence[float],
        max_batch_seconds: float,
        max_batch_size: int = 0,
        shuffle: bool = True,
        sorted_first_epoch: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        pad_multiple: int = 0,
        weights: Sequence[float] | None = None,
        large_batch_seconds: float = 0.0,
        large_batch_epoch: int = 0,
        lengths: Callable[[int, int, int], float] | None = None,
    ):
        if max_batch_seconds <= 0:
            raise ValueError(f"max_batch_seconds must be positive, got {max_batch_seconds}")
        if not (0 <= large_batch_seconds < math.inf) or large_batch_epoch < 0:
            raise ValueError(
                "large_batch_seconds must be finite and >= 0, large_batch_epoch >= 0; got "
                f"{large_batch_seconds} and {large_batch_epoch}"
            )
        if weights is not None and len(weights) != len(durations):
            raise ValueError(f"{len(weights)} weights for {len(durations)} utterances")
        if weights is not None and any(not (w >= 0) for w in weights):
            raise ValueError("utterance weights must be >= 0")
        self.durations = list(durations)
        self.weights = None if weights is None else list(weights)
        self.max_batch_seconds = max_batch_seconds
        self.large_batch_seconds = large_batch_seconds
        self.large_batch_epoch = large_batch_epoch
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        self.sorted_first_epoch = sorted_first_epoch
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        # The batch count is padded (wrapping around) to a multiple of this: every rank must
        # run the same number of steps, each of the same number of accumulated batches.
        self.pad_multiple = max(pad_multiple, num_replicas)
        self.lengths = lengths
        self.epoch = 0
        self.skip = 0  # batches of the current epoch already consumed (resume)
        self._drawn: tuple[tuple[int, int], list[list[int]]] | None = None  # (seed, epoch)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch = epoch
        self.skip = skip

    def batch_seconds(self, epoch: int) -> float:
        """The cap on padded seconds a batch in ``epoch``."""
        if self.large_batch_seconds and epoch >= self.large_batch_epoch:
            return self.large_batch_seconds
        return self.max_batch_seconds

    def epoch_length(self, epoch: int) -> int:
        """Batches of this rank in ``epoch`` (whole, however far the current one is)."""
        return len(self._all_batches(epoch))

    def _epoch_draw(self, rng: random.Random) -> list[list[int]]:
        """This epoch's utterances, in rounds: utterance ``i`` appears ``floor(w)`` times and
        once more with probability ``frac(w)``, so a weight of 0.2 shows a different fifth of
        a large corpus every epoch and 2.0 shows a small one twice. Its k-th copy is in
        round k, as index ``i + k * len(durations)`` (see :class:`SpeechDataset`)."""
        n = len(self.durations)
        if self.weights is None:
            return [list(range(n))]
        rounds: list[list[int]] = []
        for index, weight in enumerate(self.weights):
            copies = int(weight) + (rng.random() < weight - int(weight))
            for copy in range(copies):
                if copy == len(rounds):
                    rounds.append([])
                rounds[copy].append(index + copy * n)
        return rounds

    def _all_batches(self, epoch: int) -> list[list[int]]:
        # the draws of AugmentedLengths cost ~30 us a clip: make them once an epoch (the other
        # settings are fixed at construction, so (seed, epoch) is the whole key)
        if self._drawn is None or self._drawn[0] != (self.seed, epoch):
            self._drawn = ((self.seed, epoch), self._draw_batches(epoch))
        return self._drawn[1]

    def _draw_batches(self, epoch: int) -> list[list[int]]:
        rng = random.Random(self.seed * 100_003 + epoch)
        batches: list[list[int]] = []
        # Rounds are batched apart: copies of an utterance have equal durations, and sorted
        # together they would share a batch instead of being spread over the epoch.
        for order in self._epoch_draw(rng):
            batches += self._cut(order, rng, self.batch_seconds(epoch), epoch)
        if self.shuffle and not (self.sorted_first_epoch and epoch == 0):
            rng.shuffle(batches)
        if self.pad_multiple > 1:
            total = math.ceil(len(batches) / self.pad_multiple) * self.pad_multiple
            batches += (batches * self.pad_multiple)[: total - len(batches)]
        return batches[self.rank :: self.num_replicas]

    def _cut(self, order: list[int], rng: random.Random, cap: float, epoch: int) -> list[list[int]]:
        """``order`` sorted by length and cut into batches under the caps."""
        n = len(self.durations)
        if self.lengths is None:
            length = {i: self.durations[i % n] for i in order}
        else:
            length = {i: self.lengths(self.seed, epoch, i) for i in order}
        if self.shuffle:
            rng.shuffle(order)  # random tie-breaking among equal durations
        order.sort(key=length.__getitem__)
        batches: list[list[int]] = []
        current: list[int] = []
        for index in order:
            longest = length[index]  # ascending order: the newest is the longest
            full = self.max_batch_size and len(current) >= self.max_batch_size
            if current and (full or (len(current) + 1) * longest > cap):
                batches.append(current)
                current = []
            current.append(index)
        if current:
            batches.append(current)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches(self.epoch)
        yield from batches[self.skip :]

    def __len__(self) -> int:
        return len(self._all_batches(self.epoch))

    def state_dict(self, consumed: int) -> dict:
        """Position after ``consumed`` batches of this rank, counted over all ranks, so that a
        run can resume with another number of processes."""
        return {
            "epoch": self.epoch,
            "consumed_global": consumed * self.num_replicas,
            "seed": self.seed,
        }

    def load_state_dict(self, state: dict) -> None:
        self.seed = state["seed"]
        self.set_epoch(state["epoch"], state["consumed_global"] // self.num_replicas)


def batches_by_duration(durations: Sequence[float], max_batch_seconds: float) -> list[list[int]]:
    """Deterministic, sorted batches for decoding (no shuffling)."""
    sampler = DurationBatchSampler(durations, max_batch_seconds, shuffle=False)
    return list(sampler)


def worker_init(_: int) -> None:
    """Data-loader workers get one thread each: oversubscribing 2 cores is ruinous."""
    torch.set_num_threads(1)


def filter_utterances(
    utterances: Sequence[Utterance],
    tokenizer: Tokenizer,
    frames_to_outputs,
    sample_rate: int,
    hop_length: int,
    max_duration: float,
    min_duration: float = 0.0,
) -> tuple[list[int], dict[str, int]]:
    """Find the utterances training can use; return their indices and counts per reason
    for the others (:func:`asr.manifest.subset` takes the kept ones).

    Reasons: ``too_long`` (over ``max_duration`` s), ``too_short`` (under ``min_duration``),
    ``unknown_chars`` (text outside the vocabulary; for phones, a word espeak-ng gives no
    phones), ``empty_text``, and ``too_short_for_text`` (fewer output frames than CTC
    needs: one per token plus one per repeated pair).
    """
    kept: list[int] = []
    counts = {
        "too_long": 0,
        "too_short": 0,
        "unknown_chars": 0,
        "empty_text": 0,
        "too_short_for_text": 0,
    }
    for index, utt in enumerate(utterances):
        text = normalize_text(utt.text)
        if utt.duration > max_duration:
            counts["too_long"] += 1
        elif utt.duration < min_duration:
            counts["too_short"] += 1
        elif not text:
            counts["empty_text"] += 1
        elif tokenizer.unknown_characters(text):
            counts["unknown_chars"] += 1
        else:
            tokens = tokenizer.encode(text)
            needed = len(tokens) + sum(a == b for a, b in zip(tokens, tokens[1:], strict=False))
            frames = estimated_frames(utt.duration, sample_rate, hop_length)
            if int(frames_to_outputs(torch.tensor([frames]))[0]) < needed:
                counts["too_short_for_text"] += 1
            else:
                kept.append(index)
    return kept, counts
