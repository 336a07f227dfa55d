"""Log-mel speed: ours (per clip and batched) vs librosa and torchaudio's Kaldi fbank.

x-realtime = seconds of audio per second of compute (median of repeats), for a 60 s clip
and a batch of 32 x 10 s clips, at 1 and 2 torch threads; plus the max |log-mel| difference
from librosa configured identically (the accuracy target is <= 1e-4).

    python bench/bench_features.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import librosa
import numpy as np
import torch
import torchaudio.compliance.kaldi as kaldi

from asr.features import LOG_FLOOR, FeatureSpec, LogMel

SR = 16000


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    clip = (0.1 * rng.standard_normal(60 * SR)).astype(np.float32)
    batch = (0.1 * rng.standard_normal((32, 10 * SR))).astype(np.float32)
    ours = LogMel(FeatureSpec(normalize="none"))

    def ours_clip(x: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return ours.log_mel(torch.from_numpy(x)[None])[0]

    def ours_batched(xs: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return ours.log_mel(torch.from_numpy(xs))

    def ours_loop(xs: np.ndarray) -> list[torch.Tensor]:
        return [ours_clip(x) for x in xs]

    def rosa(x: np.ndarray) -> np.ndarray:
        mel = librosa.feature.melspectrogram(
            y=x,
            sr=SR,
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
        return np.log(mel + LOG_FLOOR)

    def fbank(x: np.ndarray) -> torch.Tensor:
        return kaldi.fbank(
            torch.from_numpy(x)[None],
            num_mel_bins=80,
            frame_length=25.0,
            frame_shift=10.0,
            sample_frequency=SR,
            dither=0.0,
        )

    diff = float(np.abs(ours_clip(clip[: 5 * SR]).numpy().T - rosa(clip[: 5 * SR])).max())
    print(f"max |log-mel ours - librosa| on 5 s of noise: {diff:.2e} (target <= 1e-4)")
    print(f"{'threads':>7} {'input':>12} {'method':>22} {'x-realtime':>11} {'vs librosa':>11}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        cases = {
            "60 s clip": (
                60.0,
                {
                    "ours (per clip)": lambda: ours_clip(clip),
                    "librosa": lambda: rosa(clip),
                    "torchaudio kaldi.fbank": lambda: fbank(clip),
                },
            ),
            "32 x 10 s": (
                320.0,
                {
                    "ours (per-clip loop)": lambda: ours_loop(batch),
                    "ours (one batch)": lambda: ours_batched(batch),
                    "librosa": lambda: [rosa(x) for x in batch],
                    "torchaudio kaldi.fbank": lambda: [fbank(x) for x in batch],
                },
            ),
        }
        for name, (seconds, methods) in cases.items():
            speeds = {m: seconds / timed(fn, args.repeats) for m, fn in methods.items()}
            for method, speed in speeds.items():
                ratio = speed / speeds["librosa"]
                print(f"{threads:>7} {name:>12} {method:>22} {speed:>11.0f} {ratio:>10.2f}x")


if __name__ == "__main__":
    main()
