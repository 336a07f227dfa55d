"""The machine a job runs on: device, precision, threads, processes, RNG state, signals.

Training, evaluation and transcription share these. Under ``torchrun`` (``WORLD_SIZE`` > 1)
:func:`init_distributed` joins the process group (NCCL on GPUs, gloo on CPUs) and returns
a :class:`Distributed` that the trainer asks which rank it is and through which it sums
across ranks.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import random
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist


class RuntimeSetupError(ValueError):
    """A device, precision or process setting that cannot be honoured here."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RuntimeSetupError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeSetupError(f"device {name!r} asked for, but no CUDA device is available")
    return device


def pick_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32."""
    if name not in ("auto", "fp32", "bf16", "fp16"):
        raise RuntimeSetupError(f"precision must be auto|fp32|bf16|fp16, got {name!r}")
    # torch counts a GPU that only emulates bf16 (before Ampere) as supporting it: slow
    native_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    if name == "auto":
        return torch.bfloat16 if native_bf16 else None
    if name == "bf16" and device.type == "cuda" and not native_bf16:
        raise RuntimeSetupError(
            "this GPU has no native bf16 (it would be emulated, slowly): set "
            "train.precision=fp16 (or fp32)"
        )
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def set_threads(threads: int) -> int:
    """Torch threads for the main process: explicit, or every core.

    Data workers run one thread each and only load audio and compute log-mel, a few
    percent of a training step: measured on the demo (2 cores), 1 worker + 2 main threads
    ran 17.3k frames/s, no worker + 2 threads 18.1k, 1 worker + 1 thread 11.1k.
    """
    if threads <= 0:
        # Processes sharing this machine (torchrun's LOCAL_WORLD_SIZE) split its cores.
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        threads = max(1, (os.cpu_count() or 1) // local_processes)
    torch.set_num_threads(threads)
    return threads


@dataclass
class Distributed:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process logs, evaluates and writes files."""
        return self.rank == 0

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over all processes, in place (a no-op for one process)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every process if ``flag`` is true on any (e.g. a stop signal on one)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device_name: str) -> tuple[Distributed, torch.device]:
    """Join the torchrun process group if there is one; returns it and this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_name)
    if world <= 1:
        return Distributed(), device
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # Rank 0 evaluates the dev set and writes checkpoints while the others wait at
        # the next collective: allow that much longer than the 10-minute default.
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo", timeout=DISTRIBUTED_TIMEOUT
        )
    return Distributed(rank, world, local), device


DISTRIBUTED_TIMEOUT = datetime.timedelta(hours=2)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(_flatten(random.getstate()))}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _flatten(state) -> Iterator:
    # random.getstate() is (version, tuple_of_ints, gauss); stored as a flat list of ints.
    version, internal, gauss = state
    yield version
    yield from internal
    yield -1 if gauss is None else gauss


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    flat = state["python"]
    gauss = flat[-1]
    random.setstate((flat[0], tuple(flat[1:-1]), None if gauss == -1 else gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class StopRequested:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint and exits between steps."""

    def __init__(self):
        self.signal: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopRequested:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not in the main thread: leave handlers be
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        if self.signal is not None:  # a second Ctrl-C means "now"
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
