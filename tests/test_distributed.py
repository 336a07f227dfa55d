"""DDP on CPU: two gloo processes through torchrun against one process over the same batches."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import compose_train, tiny_overrides

from asr.checkpoint import load_checkpoint
from asr.train import train

STEPS = 6
TOLERANCE = 1e-5  # gloo sums the two gradients in another order than one process does


def _overrides(corpus: Path, **extra: object) -> list[str]:
    # No dropout, no SpecAugment: the processes' random streams differ from one process's.
    return tiny_overrides(
        corpus,
        **{
            "train.max_steps": STEPS,
            "train.checkpoint_every": 2,
            "train.keep_checkpoints": 5,
            "train.eval_every": 1000,
            "train.log_every": 1,
            "model.dropout": 0.0,
            "augment.spec.freq_masks": 0,
            "augment.spec.time_masks": 0,
            "data.max_batch_seconds": 2.0,
            **extra,
        },
    )


def _torchrun(overrides: list[str], run: Path) -> dict:
    args = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "asr.train",
        *overrides,
        f"hydra.run.dir={run}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=600, env=env, cwd=run.parent
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((run / "summary.json").read_text())


def _max_difference(a: Path, b: Path) -> float:
    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


@pytest.mark.slow
def test_two_processes_match_one_process_over_the_same_batches(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    summary = _torchrun(_overrides(tiny_corpus), tmp_path / "ddp")
    assert summary["processes"] == 2 and summary["steps"] == STEPS
    assert summary["weights_identical_on_all_processes"] is True
    # One process accumulating 2 batches a step sees the batches the two processes shared.
    train(compose_train(_overrides(tiny_corpus, **{"train.accumulate": 2})), tmp_path / "one")
    final = f"step_{STEPS:08d}.pt"
    assert _max_difference(tmp_path / "ddp" / final, tmp_path / "one" / final) < TOLERANCE
    # ... and the comparison is not vacuous: one process without accumulation differs.
    train(compose_train(_overrides(tiny_corpus)), tmp_path / "plain")
    assert _max_difference(tmp_path / "ddp" / final, tmp_path / "plain" / final) > 100 * TOLERANCE

    # Resume the 2-process run's step-2 checkpoint in 1 process (accumulating 2): same end.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(tmp_path / "ddp" / "step_00000002.pt", resumed)
    train(
        compose_train([*_overrides(tiny_corpus, **{"train.accumulate": 2}), "train.resume=auto"]),
        resumed,
    )
    assert _max_difference(tmp_path / "ddp" / final, resumed / final) < TOLERANCE
    assert load_checkpoint(resumed / final)["step"] == STEPS


def test_sampler_shards_are_disjoint_and_padded_alike() -> None:
    from asr.data import DurationBatchSampler

    durations = [0.5 + 0.1 * (i % 7) for i in range(23)]
    whole = list(DurationBatchSampler(durations, 2.0, seed=3, pad_multiple=2))
    ranks = [
        list(DurationBatchSampler(durations, 2.0, seed=3, num_replicas=2, rank=r)) for r in (0, 1)
    ]
    assert len(ranks[0]) == len(ranks[1])
    interleaved = [batch for pair in zip(*ranks, strict=True) for batch in pair]
    assert interleaved == whole
    assert torch.tensor([len(b) for b in whole]).sum() >= len(durations)
