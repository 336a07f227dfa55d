"""Training throughput with the real data pipeline against the model alone.

Builds the trainer of a real experiment (default: ``experiment=real_small``, read from
``../shared/data``) and times training steps two ways on the same batches:

  pipeline    batches from the DataLoader as in training: workers read and resample the
              audio, augment it and compute log-mel while the main process trains
  model only  the same batches collated beforehand and held in memory: forward, CTC loss,
              backward and the optimiser step, nothing else

Prints frames/s (input frames) of each, median of the repeats, and the ratio.

    python bench/bench_pipeline.py --steps 40 --repeats 3
    python bench/bench_pipeline.py experiment=demo data.num_workers=2
    # no waveform augmentation, then the same with the feature cache (the stored batches
    # are read first and fill it, so the pipeline's passes read features from disk)
    python bench/bench_pipeline.py experiment=real_small augment.wave.speeds=[] \
        augment.wave.gain_db=0 augment.wave.noise_prob=0 augment.wave.reverb_prob=0 \
        [data.feature_cache=/tmp/asr-feature-cache]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time


def timed(trainer, batches) -> float:
    """Input frames per second of one optimiser step per batch."""
    frames = 0
    started = time.perf_counter()
    for batch in batches:
        loss, _, _ = trainer.train_step([batch])
        frames += trainer._frames([batch])
    float(loss)  # wait for the last step before stopping the clock
    return frames / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*", default=["experiment=real_small"])
    args = parser.parse_args()
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    import asr.cli  # noqa: F401  (registers the schemas and the asr_cache resolver)
    from asr.runtime import set_threads
    from asr.train import Trainer

    with initialize_config_module("asr.conf", version_base="1.3"):
        cfg = OmegaConf.to_object(
            compose("train", [*args.overrides, "train.progress=false", "data.dev_manifests=[]"])
        )
    set_threads(cfg.train.threads)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp)
        trainer.model.train()
        trainer.sampler.set_epoch(1)  # a shuffled epoch: batches of every length
        stored = list(itertools.islice(iter(trainer.loader), args.steps))
        timed(trainer, stored[:3])  # warm-up: allocator, oneDNN kernels
        pipeline, model_only = [], []
        for _ in range(args.repeats):
            trainer.sampler.set_epoch(1)
            pipeline.append(timed(trainer, itertools.islice(iter(trainer.loader), args.steps)))
            model_only.append(timed(trainer, stored))
    p, m = statistics.median(pipeline), statistics.median(model_only)
    workers = cfg.data.num_workers
    print(f"{' '.join(args.overrides)}: {args.steps} steps x {args.repeats}, "
          f"{workers} data worker(s), {cfg.train.threads or 'all'} torch threads\n")  # fmt: skip
    print("| | frames/s | ratio |")
    print("|---|---|---|")
    print(f"| model only (batches in memory) | {m:,.0f} | 1.00 |")
    print(f"| real data pipeline | {p:,.0f} | {p / m:.2f} |")


if __name__ == "__main__":
    main()
