"""End-to-end transcription speed: real-time factor of load + features + model + greedy.

Transcribes every file of a manifest (default: Kathleen dev, 98 files, 5 minutes of
16 kHz FLAC) with ``Transcriber.transcribe`` (reading, resampling, log-mel, the model,
greedy decoding and the word alignment for timestamps) at 1 and 2 torch threads, for the
default model shape (4 x 320 BiLSTM, 2x subsampling) and the small one (3 x 256, 4x).
Untrained weights unless ``-m`` gives checkpoints: speed does not depend on them.
RTF = processing seconds / audio seconds (median of repeats); PocketSphinx runs at
RTF ~0.35 on the same files here.

    python bench/bench_transcribe.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from asr.manifest import read_manifest


def untrained(path: Path, **dims: int) -> Path:
    from asr.checkpoint import save_checkpoint
    from asr.features import FeatureSpec
    from asr.model import CTCModel, ModelDims
    from asr.text import CharTokenizer

    tokenizer = CharTokenizer.from_texts(["abcdefghijklmnopqrstuvwxyz'"])
    model_dims = ModelDims(vocab_size=len(tokenizer), **dims)
    save_checkpoint(
        path,
        {
            "model_dims": model_dims.to_dict(),
            "model": CTCModel(model_dims).state_dict(),
            "features": FeatureSpec().to_dict(),
            "tokenizer": tokenizer.to_dict(),
        },
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(os.environ.get("ASR_SHARED_DATA", "../shared/data"))
    parser.add_argument("--manifest", default=str(shared / "kathleen/dev.jsonl"))
    parser.add_argument("-m", "--models", nargs="*", default=[])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from asr.transcribe import Transcriber

    utts = read_manifest(args.manifest)
    paths = [u.audio_filepath for u in utts]
    audio_s = sum(u.duration for u in utts)
    with tempfile.TemporaryDirectory() as tmp:
        models = {Path(m).name: m for m in args.models} or {
            "default (4 x 320, 2x)": untrained(Path(tmp) / "default.pt"),
            "small (3 x 256, 4x)": untrained(
                Path(tmp) / "small.pt",
                hidden_size=256,
                num_layers=3,
                subsampling=4,
                conv_channels=192,
            ),  # fmt: skip
        }
        rows = []
        for name, path in models.items():
            transcriber = Transcriber.from_checkpoint(path, "cpu")
            transcriber.transcribe(paths[:4])  # warm-up: allocator and kernel caches
            for threads in args.threads:
                torch.set_num_threads(threads)
                times = []
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    transcriber.transcribe(paths)
                    times.append(time.perf_counter() - started)
                rows.append((name, threads, statistics.median(times)))
    print(f"{len(paths)} files, {audio_s / 60:.1f} min of audio ({args.manifest})\n")
    print("| model | threads | seconds | RTF | x realtime |")
    print("|---|---|---|---|---|")
    for name, threads, seconds in rows:
        rtf = seconds / audio_s
        print(f"| {name} | {threads} | {seconds:.2f} | {rtf:.4f} | {1 / rtf:.0f} |")


if __name__ == "__main__":
    main()
