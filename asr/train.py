"""CTC training: data, model, optimiser, schedule, checkpoints, resume.

``train(cfg, output_dir)`` runs a whole job from a :class:`~asr.config.TrainRunConfig`.
The run folder receives ``metrics.csv`` (per logged step), ``dev_metrics.jsonl`` (per
evaluation), resumable ``step_*.pt`` checkpoints and ``best.pt`` (best dev WER).

Resuming restores model, optimiser, scheduler, sampler position and every RNG, so a run
stopped and resumed continues exactly as one never stopped.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import logging
import math
import os
import random
import signal
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from asr import checkpoint as ckpt
from asr.config import TrainRunConfig
from asr.data import (
    AugmentedLengths,
    Batch,
    DurationBatchSampler,
    SpeechDataset,
    collate,
    filter_utterances,
    worker_init,
)
from asr.evaluate import decode_utterances, score
from asr.feature_cache import FeatureCache
from asr.features import (
    FeatureSpec,
    LogMel,
    RunningStats,
    frequency_warp,
    lengths_mask,
    spec_augment,
)
from asr.io_utils import atomic_write, remove_stale_temporaries
from asr.manifest import (
    ManifestIndex,
    Utterance,
    durations_of,
    read_manifest,
    read_manifests,
    subset,
)
from asr.model import FRONT_ENDS, CTCModel, IntermediateCTC, ModelDims, subsampled_lengths
from asr.runtime import (
    StopRequested,
    init_distributed,
    pick_device,
    pick_precision,
    rng_state,
    set_rng_state,
    set_threads,
)
from asr.text import UNITS, build_tokenizer, normalize_text, tokenizer_from_dict

log = logging.getLogger("asr.train")


__all__ = ["Trainer", "TrainingError", "lr_lambda", "pick_device", "set_threads", "train"]


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why."""


def lr_lambda(warmup: int, total: int, schedule: str, min_ratio: float):
    """Linear warm-up to 1, then cosine/linear decay to ``min_ratio`` at ``total`` steps."""
    if schedule not in ("cosine", "linear", "constant"):
        raise TrainingError(f"optim.schedule must be cosine|linear|constant, got {schedule!r}")

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "linear":
            return 1.0 - (1.0 - min_ratio) * progress
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def frame_entropy(log_probs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Summed entropy in nats of the output distributions of the frames inside ``lengths``.

    log_probs [B, T, V] (log-softmax), lengths [B] -> a scalar; padded frames count for
    nothing, so the sum is the same however a batch is padded.
    """
    log_probs = log_probs.float()  # bf16's 8-bit mantissa would blur p * log p
    entropy = -(log_probs.exp() * log_probs).sum(-1)  # [B, T]
    valid = lengths_mask(lengths.to(log_probs.device), log_probs.shape[1])
    return (entropy * valid).sum()


class MetricsLog:
    """Per-step metrics appended to metrics.csv (and TensorBoard when asked)."""

    FIELDS = ["step", "epoch", "loss", "lr", "grad_norm", "utterances", "frames_per_s", "elapsed_s"]

    def __init__(self, folder: Path, fmt: str, enabled: bool = True):
        self.path = folder / "metrics.csv"
        self.writer = None
        if not enabled:  # not the main process: log nothing
            fmt = "none"
        if fmt in ("tensorboard", "both"):
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise TrainingError(
                    "train.metrics_format asks for TensorBoard, which is not installed: "
                    "pip install tensorboard, or use train.metrics_format=csv"
                ) from None

            self.writer = SummaryWriter(str(folder / "tensorboard"))
        self.csv = fmt in ("csv", "both")
        if self.csv and not self.path.exists():
            with open(self.path, "w", newline="") as handle:
                csv.writer(handle).writerow(self.FIELDS)

    def truncate_after(self, step: int) -> None:
        """On resume, forget steps logged after the checkpoint (they will be redone)."""
        if not self.csv or not self.path.exists():
            return
        with open(self.path, newline="") as handle:
            rows = [r for r in csv.reader(handle)]
        keep = [rows[0]] + [r for r in rows[1:] if int(r[0]) <= step]
        with atomic_write(self.path, "w") as handle:
            csv.writer(handle).writerows(keep)

    def write(self, row: dict) -> None:
        if self.csv:
            with open(self.path, "a", newline="") as handle:
                csv.writer(handle).writerow([row[k] for k in self.FIELDS])
        if self.writer is not None:
            for key in ("loss", "lr", "grad_norm", "frames_per_s"):
                self.writer.add_scalar(f"train/{key}", row[key], row["step"])


class Trainer:
    """One training job. Build with a config and a run folder, then call :meth:`run`."""

    def __init__(self, cfg: TrainRunConfig, output_dir: str | Path):
        self.cfg = cfg
        self.out = Path(output_dir)
        tcfg = cfg.train
        if tcfg.accumulate < 1:
            raise TrainingError(f"train.accumulate must be at least 1, got {tcfg.accumulate}")
        self.dist, self.device = init_distributed(tcfg.device)
        if not self.dist.is_main:  # one voice in the log: the other ranks say only warnings
            logging.getLogger("asr").setLevel(logging.WARNING)
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            for tmp in remove_stale_temporaries(self.out):  # a killed run's half-written files
                log.info("removed %s, left by an interrupted write", tmp.name)
        if tcfg.deterministic:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.deterministic = True
        # cuDNN autotuning pays off for the conv front end once the bucketed batch shapes
        # repeat; it is not bit-reproducible, so determinism turns it off.
        torch.backends.cudnn.benchmark = not tcfg.deterministic
        self.amp_dtype = pick_precision(tcfg.precision, self.device)
        self.threads = set_threads(tcfg.threads)
        torch.manual_seed(tcfg.seed)
        random.seed(tcfg.seed)
        placement = cfg.data.feature_placement
        if placement not in ("auto", "workers", "device"):
            raise TrainingError(
                f"data.feature_placement must be auto|workers|device, got {placement!r}"
            )
        if not (0 <= cfg.data.large_batch_seconds < math.inf) or cfg.data.large_batch_epoch < 0:
            raise TrainingError(
                "data.large_batch_seconds must be finite and >= 0, data.large_batch_epoch >= 0; "
                f"got {cfg.data.large_batch_seconds} and {cfg.data.large_batch_epoch}"
            )
        try:
            cfg.augment.wave.check()
        except ValueError as exc:
            raise TrainingError(f"augment.wave.{exc}") from None
        try:
            cfg.augment.spec.check()
        except ValueError as exc:
            raise TrainingError(f"augment.spec.{exc}") from None
        if not (0 <= tcfg.intermediate_layer < cfg.model.num_layers):
            raise TrainingError(
                f"train.intermediate_layer must be 0 (off) or a BiLSTM layer below the top, "
                f"1..{cfg.model.num_layers - 1}; got {tcfg.intermediate_layer}"
            )
        if not (0.0 <= tcfg.intermediate_weight < 1.0):
            raise TrainingError(
                f"train.intermediate_weight must be in [0, 1), got {tcfg.intermediate_weight}"
            )
        if not (0.0 <= tcfg.confidence_penalty <= 1.0):
            raise TrainingError(
                f"train.confidence_penalty must be in [0, 1], got {tcfg.confidence_penalty}"
            )
        for name in ("dropout", "recurrent_dropout"):
            if not 0.0 <= getattr(cfg.model, name) < 1.0:
                raise TrainingError(
                    f"model.{name} must be in [0, 1), got {getattr(cfg.model, name)}"
                )
        if cfg.model.front_end not in FRONT_ENDS:
            raise TrainingError(
                f"model.front_end must be {'|'.join(FRONT_ENDS)}, got {cfg.model.front_end!r}"
            )
        if cfg.data.units not in UNITS:
            raise TrainingError(f"data.units must be {'|'.join(UNITS)}, got {cfg.data.units!r}")
        if cfg.data.bpe_vocab_size < 2:
            raise TrainingError(
                f"data.bpe_vocab_size must be at least 2, got {cfg.data.bpe_vocab_size}"
            )
        if placement == "device" and cfg.data.feature_cache:
            raise TrainingError(
                "data.feature_cache needs features computed in the data-loader workers: "
                "set data.feature_placement=auto or workers"
            )
        # The cache needs features computed in the workers; it can serve training only
        # without waveform augmentation, so only then does it outweigh batched GPU features.
        caches_training = bool(cfg.data.feature_cache) and not cfg.augment.wave.enabled
        self.features_on_device = placement == "device" or (
            placement == "auto" and self.device.type == "cuda" and not caches_training
        )
        self.resume_state = self._find_resume_state()
        self._build_data()
        self._build_model()
        self.step = 0
        self.epoch = 0
        self.consumed = 0  # batches of the current epoch done
        self.best_wer = math.inf
        # training seconds of the checkpoint resumed from, and when this process began training
        self.trained_before, self.run_start = 0.0, None
        self.last_saved = -1
        self.failed_audio: dict[int, str] = {}
        self.metrics = MetricsLog(self.out, tcfg.metrics_format, enabled=self.dist.is_main)
        if self.resume_state is not None:
            self._restore(self.resume_state)
        elif self.dist.is_main:  # a fresh run in a used folder: old curves would mix in
            self.metrics.truncate_after(0)
            _truncate_jsonl(self.out / "dev_metrics.jsonl", 0)

    # ---------------------------------------------------------------- set-up
    def _find_resume_state(self) -> dict | None:
        resume = self.cfg.train.resume
        if not resume:
            earlier = ckpt.list_checkpoints(self.out) if self.out.is_dir() else []
            if earlier:  # pruning would delete the new run's checkpoints, not the old ones
                raise TrainingError(
                    f"{self.out} holds checkpoints of an earlier run ({earlier[-1].name}): "
                    "resume it with train.resume=auto, or give a new hydra.run.dir"
                )
            return None
        if resume == "auto":
            found = ckpt.list_checkpoints(self.out)
            if not found:
                log.info("resume=auto: no checkpoint in %s, starting fresh", self.out)
                return None
            resume = str(found[-1])
        state = ckpt.load_checkpoint(resume)
        if "optimizer" not in state:
            raise TrainingError(f"{resume}: not a resumable checkpoint (no optimiser state)")
        log.info("resuming from %s (step %d)", resume, state["step"])
        return state

    @staticmethod
    def _read_weighted(
        paths: list[str], weights: list[float], lazy: bool
    ) -> tuple[Sequence[Utterance], list[float] | None]:
        """Read the training manifests (a :class:`ManifestIndex` when ``lazy``) and each
        utterance's sampling weight, that of its manifest (None when every weight is 1)."""
        if weights and len(weights) != len(paths):
            raise TrainingError(
                f"data.train_weights has {len(weights)} values for {len(paths)} train_manifests"
            )
        if any(not (w >= 0) for w in weights) or (weights and not any(weights)):
            raise TrainingError(f"data.train_weights must be >= 0, not all 0: got {weights}")
        if lazy:
            utterances: Sequence[Utterance] = ManifestIndex(paths)
            source = utterances.file_of  # which manifest each utterance came from
        else:
            parts = [read_manifest(path) for path in paths]
            utterances = [u for part in parts for u in part]
            source = np.repeat(np.arange(len(parts)), [len(part) for part in parts])
        if not weights or all(w == 1.0 for w in weights):
            return utterances, None
        return utterances, np.asarray(weights, dtype=np.float64)[source].tolist()

    def _build_data(self) -> None:
        cfg = self.cfg
        if not cfg.data.train_manifests:
            raise TrainingError("data.train_manifests is empty: give at least one manifest")
        train, weights = self._read_weighted(
            cfg.data.train_manifests, cfg.data.train_weights, cfg.data.lazy_manifests
        )
        self.dev = read_manifests(cfg.data.dev_manifests) if cfg.data.dev_manifests else []
        if self.resume_state is not None:
            self.tokenizer = tokenizer_from_dict(self.resume_state["tokenizer"])
            stored = self.tokenizer.to_dict()["type"]
            if stored != cfg.data.units:
                raise TrainingError(
                    f"the checkpoint to resume has {stored} units, data.units is "
                    f"{cfg.data.units}: start a fresh run folder or set data.units={stored}"
                )
        else:
            self.tokenizer = build_tokenizer(
                cfg.data.units, (normalize_text(u.text) for u in train), cfg.data.bpe_vocab_size
            )
        self.spec = FeatureSpec(**asdict(cfg.features))
        self.features = LogMel(self.spec)
        dims = ModelDims(
            n_mels=self.spec.n_mels, vocab_size=len(self.tokenizer), **asdict(cfg.model)
        )
        self.dims = dims
        kept, self.filtered = filter_utterances(
            train,
            self.tokenizer,
            lambda n: subsampled_lengths(n, dims.conv_kernel, dims.subsampling),
            self.spec.sample_rate,
            self.spec.hop_length,
            cfg.data.max_duration,
            cfg.data.min_duration,
        )
        self.train_utts = subset(train, kept)
        durations = durations_of(self.train_utts)
        dropped = {k: v for k, v in self.filtered.items() if v}
        log.info(
            "training on %d of %d utterances (%.1f h); skipped: %s",
            len(self.train_utts),
            len(train),
            sum(durations) / 3600,
            dropped or "none",
        )
        if not self.train_utts:
            raise TrainingError(f"no usable training utterance (skipped: {dropped})")
        kept_weights = [weights[i] for i in kept] if weights else None
        if kept_weights is not None and not any(kept_weights):
            raise TrainingError(
                "every utterance of the manifests with a data.train_weights above 0 was "
                f"skipped (skipped: {dropped})"
            )
        if self.spec.normalize == "global" and self.resume_state is None:
            self._compute_global_stats(kept_weights)
        worker_features = None if self.features_on_device else copy.deepcopy(self.features)
        folder = cfg.data.feature_cache
        dataset = SpeechDataset(
            self.train_utts,
            worker_features,
            self.tokenizer,
            self.spec.sample_rate,
            augment=cfg.augment.wave,
            seed=cfg.train.seed,
            cache=FeatureCache(folder, worker_features) if folder and worker_features else None,
        )
        if folder and self.features_on_device:
            log.info("data.feature_cache is not used: features are computed on %s", self.device)
        elif folder and cfg.augment.wave.enabled:
            log.info("data.feature_cache serves the dev set only: waveform augmentation is on")
        self.dataset = dataset
        self.sampler = DurationBatchSampler(
            durations,
            cfg.data.max_batch_seconds,
            cfg.data.max_batch_size,
            shuffle=True,
            sorted_first_epoch=cfg.data.sorted_first_epoch,
            seed=cfg.train.seed,
            num_replicas=self.dist.world_size,
            rank=self.dist.rank,
            pad_multiple=self.dist.world_size * cfg.train.accumulate,
            weights=kept_weights,
            large_batch_seconds=cfg.data.large_batch_seconds,
            large_batch_epoch=cfg.data.large_batch_epoch,
            # sized by the clips as sped up and padded, the same draws the workers make
            lengths=(
                AugmentedLengths(durations, cfg.augment.wave) if cfg.augment.wave.enabled else None
            ),
        )
        workers = cfg.data.num_workers
        self.loader = DataLoader(
            dataset,
            batch_sampler=self.sampler,
            collate_fn=collate,
            num_workers=workers,
            worker_init_fn=worker_init if workers else None,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=4 if workers else None,
            # Its own generator: seeding workers must not draw from the global RNG, or a
            # resumed run would see different dropout masks than an uninterrupted one.
            generator=torch.Generator().manual_seed(cfg.train.seed),
        )

    def _compute_global_stats(self, weights: list[float] | None) -> None:
        """Per-band mean and std over up to ``data.stats_utterances`` training clips: spread
        evenly over the corpus or, with sampling weights, drawn without replacement with
        probability in proportion to them (a manifest of weight 0 never counts); not the
        first clips of the first manifest."""
        stats = RunningStats(self.spec.n_mels)
        raw = LogMel(FeatureSpec(**{**asdict(self.spec), "normalize": "none"}))
        n, count = len(self.train_utts), min(len(self.train_utts), self.cfg.data.stats_utterances)
        if weights is None:
            picks = np.unique(np.linspace(0, n - 1, count).round().astype(np.int64))
        else:
            p = np.asarray(weights, dtype=np.float64)
            count = min(count, int(np.count_nonzero(p)))
            rng = np.random.default_rng(self.cfg.train.seed)
            picks = np.sort(rng.choice(n, size=count, replace=False, p=p / p.sum()))
        utts = subset(self.train_utts, picks.tolist())
        for utt in utts:
            wave = SpeechDataset([utt], None, None, self.spec.sample_rate)[0].get("input")
            if wave is not None:
                stats.update(raw.log_mel(wave[None])[0])
        mean, std = stats.result()
        self.features.set_global_stats(mean, std)
        log.info("global feature statistics from %d utterances", len(utts))

    def _build_model(self) -> None:
        cfg = self.cfg
        self.model = CTCModel(self.dims).to(self.device)
        # `net` runs the training forward pass: the model itself, or its DDP wrapper, which
        # averages gradients over processes. Evaluation and checkpoints use the model.
        self.net: torch.nn.Module = self.model
        if cfg.train.intermediate_layer:
            self.net = IntermediateCTC(self.model, cfg.train.intermediate_layer)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.net, device_ids=ids)
        self.features.to(self.device)
        log.info("model: %.2f M parameters, %s", self.model.num_parameters() / 1e6, self.dims)
        # The fused AdamW kernel takes a "found_inf" tensor and skips the update on the
        # device itself, so a non-finite step is dropped without the host waiting for the
        # gradient norm (one less sync per step on a GPU). CPU and CUDA have the kernel.
        self.fused = self.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=cfg.optim.lr,
            betas=tuple(cfg.optim.betas),
            weight_decay=cfg.optim.weight_decay,
            fused=self.fused or None,
        )
        # non-finite steps, counted on the device and read when metrics are logged
        self.skipped = torch.zeros((), dtype=torch.long, device=self.device)
        self.bad_run = torch.zeros_like(self.skipped)  # the current run of them
        self.worst_run = torch.zeros_like(self.skipped)  # the longest run so far
        self.total_steps = cfg.train.max_steps or self._planned_steps()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lr_lambda(
                cfg.optim.warmup_steps, self.total_steps, cfg.optim.schedule, cfg.optim.min_lr_ratio
            ),
        )
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )
        self.aug_gen = torch.Generator().manual_seed(cfg.train.seed + 1)

    def _planned_steps(self) -> int:
        """Optimiser steps in ``train.epochs``, for the learning-rate schedule: epoch 0's
        count for every epoch, and with large batches epoch ``large_batch_epoch``'s for the
        epochs from there (weighted draws make the counts vary a little by epoch)."""
        cfg = self.cfg
        per_epoch = self.sampler.epoch_length(0) // cfg.train.accumulate
        switch = cfg.data.large_batch_epoch
        if not cfg.data.large_batch_seconds or switch >= cfg.train.epochs:
            return cfg.train.epochs * per_epoch
        large = self.sampler.epoch_length(switch) // cfg.train.accumulate
        return switch * per_epoch + (cfg.train.epochs - switch) * large

    def _restore(self, state: dict) -> None:
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError:
            raise TrainingError(
                f"the checkpoint to resume holds another model shape ({state['model_dims']}) "
                f"than this config ({self.dims.to_dict()})"
            ) from None
        self.optimizer.load_state_dict(state["optimizer"])
        # A checkpoint keeps its optimiser's options: one written by an unfused AdamW would
        # turn this one unfused, and then the found_inf skip (train_step) fails. Re-assert
        # ours, and reload so the step counters move where the fused kernel wants them.
        for group in self.optimizer.param_groups:
            group["fused"], group["foreach"] = self.fused or None, None
        self.optimizer.load_state_dict(self.optimizer.state_dict())
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        stats = state.get("feature_stats")
        if stats is not None and self.dataset.features is not None:
            self.dataset.features.set_global_stats(stats["mean"], stats["std"])
        if stats is not None:
            self.features.set_global_stats(
                stats["mean"].to(self.device), stats["std"].to(self.device)
            )
        self.sampler.load_state_dict(state["sampler"])
        # the run's seed, not this command line's: the sampler's batches, the clips' speeds
        # and pads and their other draws must be the ones the checkpointed run would make
        self.dataset.seed = self.sampler.seed
        self.step, self.epoch = state["step"], self.sampler.epoch
        self.consumed = self.sampler.skip
        self.best_wer = state["best_wer"]
        self.trained_before = float(state.get("training_time_s", 0.0))  # 0: an older checkpoint
        self.skipped.fill_(state["skipped_steps"])
        self.aug_gen.set_state(state["aug_rng"])
        set_rng_state(state["rng"])
        # Steps logged after the checkpoint will be run again: forget them.
        if self.dist.is_main:
            self.metrics.truncate_after(self.step)
            _truncate_jsonl(self.out / "dev_metrics.jsonl", self.step)

    # ------------------------------------------------------------- checkpoints
    def model_state(self) -> dict:
        """Everything needed to transcribe: model, features, tokenizer, their shapes."""
        return {
            "model_dims": self.dims.to_dict(),
            "model": self.model.state_dict(),
            "features": self.spec.to_dict(),
            "feature_stats": {"mean": self.features.mean.cpu(), "std": self.features.std.cpu()},
            "tokenizer": self.tokenizer.to_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "config": _plain(asdict(self.cfg)),
        }

    def save(self, name: str | None = None) -> Path | None:
        """Write a resumable checkpoint (main process only; returns its path)."""
        if not self.dist.is_main:
            return None
        path = self.out / (name or f"step_{self.step:08d}.pt")
        state = self.model_state()
        state.update(
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            sampler=self.sampler.state_dict(self.consumed),
            rng=rng_state(),
            aug_rng=self.aug_gen.get_state(),
            best_wer=self.best_wer,
            skipped_steps=int(self.skipped),
            training_time_s=self.training_time(),
        )
        ckpt.save_checkpoint(path, state)
        self.last_saved = self.step
        if name is None:
            ckpt.prune_checkpoints(self.out, self.cfg.train.keep_checkpoints)
        return path

    def training_time(self) -> float:
        """Seconds spent training so far, across resumes (time after the last checkpoint
        of a killed run is not counted: its steps are run again)."""
        running = time.perf_counter() - self.run_start if self.run_start is not None else 0.0
        return self.trained_before + running

    # ---------------------------------------------------------------- training
    def _ctc_sum(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed CTC loss of one batch: (the objective, the top layer's loss alone).

        They differ only with an intermediate CTC loss or a confidence penalty. An empty
        batch gives zeros that still reach every weight.
        """
        if not len(batch):  # every file failed: take part in the gradient sync all the same
            # (DDP only exchanges gradients after a forward through the wrapped model)
            dummy = torch.zeros(1, 4, self.spec.n_mels, device=self.device)
            outputs = self.net(dummy, torch.tensor([4], device=self.device))
            zero = sum(out.sum() for out in outputs if out.is_floating_point()) * 0.0
            return zero, zero.detach()
        device = self.device
        inputs = batch.inputs.to(device, non_blocking=True)
        lengths = batch.input_lengths.to(device, non_blocking=True)
        targets = batch.targets.to(device, non_blocking=True)
        target_lengths = batch.target_lengths.to(device, non_blocking=True)
        if self.features_on_device:
            with torch.no_grad():
                inputs, lengths = self.features(inputs, lengths)
        masks = self.cfg.augment.spec
        if masks.freq_warp:
            # warped after normalisation: per-band statistics move with their bands, and the
            # same code serves features made in the workers and on the device
            draws = torch.rand(len(lengths), generator=self.aug_gen)
            factors = 1.0 + masks.freq_warp * (2.0 * draws - 1.0)
            inputs = frequency_warp(inputs, factors, self.spec.f_min, self.spec.top_hz)
        if masks.freq_masks or masks.time_masks:
            inputs = spec_augment(inputs, lengths, masks, self.aug_gen)
        dtype = self.amp_dtype or torch.float32
        with torch.autocast(device.type, dtype=dtype, enabled=self.amp_dtype is not None):
            log_probs, out_lengths, *intermediate = self.net(inputs, lengths)

        def ctc(lp: torch.Tensor) -> torch.Tensor:
            return F.ctc_loss(
                lp.transpose(0, 1),
                targets,
                out_lengths,
                target_lengths,
                blank=self.tokenizer.blank_id,
                reduction="sum",
                zero_infinity=True,
            )

        top = ctc(log_probs)
        objective = top
        if intermediate:
            weight = self.cfg.train.intermediate_weight
            objective = (1.0 - weight) * top + weight * ctc(intermediate[0])
        if self.cfg.train.confidence_penalty:
            penalty = self.cfg.train.confidence_penalty
            objective = objective - penalty * frame_entropy(log_probs, out_lengths)
        return objective, top.detach()

    def train_step(self, batches: list[Batch]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimiser step over ``batches`` (accumulated; under DDP, this rank's share).

        The loss is divided by the number of target tokens of the whole step, summed over
        batches and processes, so 2 processes x 1 batch, 1 process x 2 accumulated batches
        and 1 process x one merged batch all take the same step.

        A step whose gradients are not finite leaves weights and optimiser state alone
        (the learning-rate schedule still advances). Nothing here waits for the device:
        returns device tensors (loss per token of these batches, grad norm, finite flag),
        read only when metrics are logged.
        """
        local_tokens = sum(int(b.target_lengths.sum()) for b in batches)  # host lengths
        # torch.full is a fill kernel: a host-to-device copy would wait for the device
        tokens = self.dist.all_sum(torch.full((), float(local_tokens), device=self.device))
        scale = self.dist.world_size / tokens.clamp(min=1.0)  # DDP averages over processes
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            exchange = contextlib.nullcontext()
            if self.dist.enabled and not last:  # gradients cross processes once, at the end
                exchange = self.net.no_sync()
            with exchange:
                objective, loss = self._ctc_sum(batch)
                self.scaler.scale(objective * scale).backward()
            total += loss
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), self.cfg.optim.grad_clip
        )
        # A non-finite loss makes non-finite gradients, which must not reach the weights.
        # After DDP the norm is the same on every process, so all of them skip alike.
        finite = torch.isfinite(grad_norm)
        if self.scaler.is_enabled():  # fp16: the scaler skips on its own inf check
            self.scaler.step(self.optimizer)
        elif self.fused:
            self.optimizer.found_inf = (~finite).float()
            self.optimizer.step()
            self.optimizer.found_inf = None
        elif bool(finite):  # no fused kernel on this device: one host sync
            self.optimizer.step()
        self.scaler.update()
        self.scheduler.step()
        bad = (~finite).long()
        self.skipped += bad
        self.bad_run = (self.bad_run + 1) * bad
        self.worst_run = torch.maximum(self.worst_run, self.bad_run)
        return total.detach() / max(local_tokens, 1), grad_norm.detach(), finite

    def _check_bad_steps(self) -> None:
        """Stop after ``train.max_bad_steps`` non-finite steps in a row (reads the device)."""
        worst = int(self.worst_run)
        if worst >= self.cfg.train.max_bad_steps:
            raise TrainingError(
                f"{worst} non-finite losses in a row by step {self.step} (limit "
                f"train.max_bad_steps={self.cfg.train.max_bad_steps}): lower optim.lr, "
                "check the data, or raise train.max_bad_steps"
            )

    def run(self) -> dict:
        """Train to the end (or to a stop signal); returns the summary written to summary.json."""
        cfg = self.cfg.train
        summary_path = self.out / "summary.json"
        if self._finished() and summary_path.exists():
            # resume=auto on a finished run (make demo twice): keep its summary and figures
            log.info("the run in %s is already finished (step %d)", self.out, self.step)
            return json.loads(summary_path.read_text())
        self.trained_before = self.training_time()  # a second run() carries on counting
        start = self.run_start = time.perf_counter()
        stopped_by = None
        with StopRequested() as stop:
            while not self._finished():
                stopped_by = self._run_epoch(stop)
                if stopped_by:
                    break
                self.epoch += 1
                self.consumed = 0
                self.sampler.set_epoch(self.epoch)
                if self.dev and (self.epoch % cfg.eval_every == 0 or self._finished()):
                    self.evaluate_dev()
                self.save()
        if stopped_by:
            path = self.save()
            name = signal.Signals(stopped_by).name
            log.warning(
                "stopped by %s at step %d; checkpoint %s. Resume with the same command "
                "plus train.resume=auto hydra.run.dir=%s",
                name,
                self.step,
                path,
                self.out,
            )
        elif self.dev and self.dist.is_main and not (self.out / "best.pt").exists():
            self.evaluate_dev()
        summary = {
            "steps": self.step,
            "epochs": self.epoch,
            "best_dev_wer": None if math.isinf(self.best_wer) else self.best_wer,
            "skipped_utterances": self.filtered,
            "unreadable_audio": len(self.failed_audio),
            "non_finite_steps_skipped": int(self.skipped),
            "wall_time_s": round(time.perf_counter() - start, 1),  # this process
            "training_time_s": round(self.training_time(), 1),  # and the runs it resumed
            "interrupted": stopped_by is not None,
            "stop_signal": stopped_by,
            "processes": self.dist.world_size,
        }
        if self.dist.enabled:
            summary["weights_identical_on_all_processes"] = self._weights_in_sync()
        if self.dist.is_main:
            with atomic_write(self.out / "summary.json") as handle:
                json.dump(summary, handle, indent=2)
        if self.failed_audio:
            log.warning(
                "%d training files could not be read, e.g. %s",
                len(self.failed_audio),
                next(iter(self.failed_audio.values())),
            )
        return summary

    def _weights_in_sync(self) -> bool:
        """True if every process ends with bit-identical weights (a check on DDP itself)."""
        flat = torch.cat([p.detach().reshape(-1).double() for p in self.model.parameters()])
        low, high = flat.clone(), flat.clone()
        torch.distributed.all_reduce(low, op=torch.distributed.ReduceOp.MIN)
        torch.distributed.all_reduce(high, op=torch.distributed.ReduceOp.MAX)
        return bool(torch.equal(low, high))

    def _finished(self) -> bool:
        cfg = self.cfg.train
        return (cfg.max_steps and self.step >= cfg.max_steps) or (
            not cfg.max_steps and self.epoch >= cfg.epochs
        )

    def _run_epoch(self, stop: StopRequested) -> int | None:
        cfg = self.cfg.train
        self.model.train()
        self.sampler.set_epoch(self.epoch, self.consumed)
        self.dataset.epoch = self.epoch  # workers get a fresh copy of the dataset each epoch
        window = _LogWindow()
        show = cfg.progress and self.dist.is_main
        bar = _progress(len(self.sampler), self.consumed, f"epoch {self.epoch}", show)
        group: list[Batch] = []
        for batch in self.loader:
            for index, error in batch.failed:
                self.failed_audio.setdefault(index, error)
            group.append(batch)
            bar.update(1)
            if len(group) < cfg.accumulate:
                continue
            self.consumed += len(group)
            result = self.train_step(group)
            self.step += 1
            window.add(result, group, self._frames(group))
            group = []
            if self.step % cfg.log_every == 0:
                self._check_bad_steps()
                row = window.flush(self.step, self.epoch, self.scheduler.get_last_lr()[0])
                self.metrics.write(row)
                speed = f"{row['frames_per_s']:.0f}"
                bar.set_postfix(loss=f"{row['loss']:.3f}", step=self.step, frames_s=speed)
            every = cfg.checkpoint_every
            if every and self.step and self.step % every == 0 and self.step != self.last_saved:
                self.save()
            # Under DDP asking the other processes is a collective (a host sync): do it
            # every log_every steps, at the same steps on every process.
            asked = not self.dist.enabled or self.step % cfg.log_every == 0
            stopping = asked and self.dist.any(stop.signal is not None, self.device)
            if stopping or self._finished():
                bar.close()
                if not stopping:  # a stop saves its checkpoint first; the weights are sound
                    self._check_bad_steps()
                return (stop.signal or signal.SIGTERM) if stopping else None
        bar.close()
        self._check_bad_steps()
        return None

    def _frames(self, batches: list[Batch]) -> int:
        """Feature frames in ``batches`` (their lengths are samples when the device extracts)."""
        lengths = [b.input_lengths for b in batches if len(b)]
        if self.features_on_device:
            lengths = [self.features.frame_lengths(n) for n in lengths]
        return sum(int(n.sum()) for n in lengths)

    def evaluate_dev(self) -> dict | None:
        """Greedy WER/CER on the dev manifests (main process only); keeps ``best.pt``."""
        if not self.dist.is_main:
            return None
        hyps = decode_utterances(
            self.model,
            self.features,
            self.tokenizer,
            self.dev,
            self.device,
            self.cfg.data.max_batch_seconds,
            self.cfg.data.num_workers,
            cache=FeatureCache(self.cfg.data.feature_cache, self.features)
            if self.cfg.data.feature_cache
            else None,
        )
        result = score([u.text for u in self.dev], hyps)
        result.update(step=self.step, epoch=self.epoch)
        with open(self.out / "dev_metrics.jsonl", "a") as handle:
            handle.write(json.dumps(result) + "\n")
        log.info(
            "epoch %d step %d: dev WER %.4f CER %.4f",
            self.epoch,
            self.step,
            result["wer"],
            result["cer"],
        )
        if result["wer"] < self.best_wer:
            self.best_wer = result["wer"]
            state = self.model_state()
            state["metrics"] = result
            ckpt.save_checkpoint(self.out / "best.pt", state)
        self.model.train()
        return result


class _LogWindow:
    """Losses and sizes of the steps since the last metrics row; read (one sync) when logged."""

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.norms: list[torch.Tensor] = []
        self.finite: list[torch.Tensor] = []
        self.frames = self.utterances = 0
        self.start = time.perf_counter()

    def add(
        self,
        result: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        batches: list[Batch],
        frames: int,
    ) -> None:
        self.losses.append(result[0])
        self.norms.append(result[1])
        self.finite.append(result[2])
        self.frames += frames
        self.utterances += sum(len(b) for b in batches)

    def flush(self, step: int, epoch: int, lr: float) -> dict:
        """The metrics row for the window, which then starts again."""
        elapsed = time.perf_counter() - self.start
        finite = torch.stack(self.finite)
        count = int(finite.sum())  # skipped steps are left out of the means

        def mean(values: list[torch.Tensor]) -> float:
            if not count:
                return math.nan  # every step skipped: no loss to show
            stacked = torch.stack(values)
            return float(torch.where(finite, stacked, torch.zeros_like(stacked)).sum()) / count

        row = {
            "step": step,
            "epoch": epoch,
            "loss": round(mean(self.losses), 5),
            "lr": lr,
            "grad_norm": round(mean(self.norms), 4),
            "utterances": self.utterances,
            "frames_per_s": round(self.frames / max(elapsed, 1e-9), 1),
            "elapsed_s": round(elapsed, 3),
        }
        self.__init__()
        return row


def _truncate_jsonl(path: Path, step: int) -> None:
    """Keep the lines of a JSONL log whose "step" is at most ``step``."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    keep = []
    for line in lines:
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line if line.endswith("\n") else line + "\n")
        except ValueError:  # half a line, from a kill during the append
            log.warning("%s: dropped an unreadable line", path)
    if len(keep) != len(lines):
        with atomic_write(path) as handle:
            handle.writelines(keep)


def _progress(total: int, initial: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        disable=not enabled,
        leave=False,
        dynamic_ncols=True,
        mininterval=1.0 if os.isatty(2) else 30.0,
    )


def _plain(value):
    """Config values as plain Python (lists, dicts, str, numbers) for weights-only checkpoints."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def train(cfg: TrainRunConfig, output_dir: str | Path) -> dict:
    """Run a training job described by ``cfg`` in ``output_dir``; returns its summary."""
    trainer = Trainer(cfg, output_dir)
    try:
        return trainer.run()
    finally:
        trainer.dist.close()


if __name__ == "__main__":  # torchrun -m asr.train ...
    from asr.cli import train_main

    train_main()
