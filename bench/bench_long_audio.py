"""Peak memory and speed of transcribing one long file: 1, 10 and 60 minutes.

The long files are made by concatenating real utterances (Kathleen train from
../shared/data, else the synthetic demo corpus) with 0.4 s pauses, written as FLAC to a
temporary folder. Each length is transcribed by a fresh process (so its peak RSS is its
own) through ``Transcriber.transcribe``, i.e. streamed and cut at pauses. Prints peak RSS,
the real-time factor and, since the references are known, the WER of the stitched text.

    python bench/bench_long_audio.py -m outputs/real_small/best.pt --minutes 1 10 60
    python bench/bench_long_audio.py            # an untrained default-size model: memory only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000
PAUSE = np.zeros(int(0.4 * RATE), np.float32)


def source_manifest() -> Path:
    shared = Path(os.environ.get("ASR_SHARED_DATA", "../shared/data")) / "kathleen/train.jsonl"
    if shared.is_file():
        return shared
    from asr.demo import build_demo_corpus

    return build_demo_corpus()["train"]


def make_long_file(manifest: Path, minutes: float, out: Path) -> str:
    """Concatenate utterances (cycling) into ``out``; returns the reference text."""
    from asr.audio import load_audio
    from asr.manifest import read_manifest

    utts = read_manifest(manifest)
    target = int(minutes * 60 * RATE)
    texts, written = [], 0
    with sf.SoundFile(out, "w", RATE, 1, format="FLAC") as handle:
        while written < target:
            for utt in utts:
                wave = load_audio(utt.audio_filepath, RATE).numpy()
                handle.write(np.concatenate([wave, PAUSE]))
                written += len(wave) + len(PAUSE)
                texts.append(utt.text)
                if written >= target:
                    break
    return " ".join(texts)


def child(model: str, audio: str, threads: int) -> None:
    """Runs in the fresh process: transcribe, print JSON with peak RSS and timings."""
    import torch

    from asr.transcribe import Transcriber

    torch.set_num_threads(threads)
    transcriber = Transcriber.from_checkpoint(model, "cpu")
    started = time.perf_counter()
    [result] = transcriber.transcribe([audio])
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "peak_mb": peak_mb,
                "seconds": seconds,
                "duration": result.duration,
                "text": result.text,
                "words": len(result.words),
            }
        )  # fmt: skip
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", default="", help="checkpoint (default: untrained)")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.threads)
        return
    import jiwer

    from asr.text import normalize_text

    manifest = source_manifest()
    rows = []
    with tempfile.TemporaryDirectory(prefix="asr-long-") as tmp:
        from bench_transcribe import untrained  # bench/ is on sys.path when run as a script

        model = args.model or str(untrained(Path(tmp) / "untrained.pt"))
        for minutes in args.minutes:
            audio = Path(tmp) / f"long-{minutes:g}min.flac"
            reference = make_long_file(manifest, minutes, audio)
            out = subprocess.run(
                [sys.executable, __file__, "--threads", str(args.threads), "--child", model,
                 str(audio)],
                check=True, capture_output=True, text=True,
            ).stdout  # fmt: skip
            result = json.loads(out.strip().splitlines()[-1])
            wer = jiwer.wer(normalize_text(reference), normalize_text(result["text"]) or "-")
            rows.append((minutes, result, wer))
            audio.unlink()
    print(f"source: {manifest}; model: {args.model or 'untrained default'}; "
          f"threads: {args.threads}\n")  # fmt: skip
    print("| audio | peak RSS (MB) | transcription time (s) | RTF | words | WER |")
    print("|---|---|---|---|---|---|")
    for minutes, r, wer in rows:
        shown = f"{wer:.3f}" if args.model else "-"  # an untrained model's text means nothing
        print(
            f"| {minutes:g} min | {r['peak_mb']:.0f} | {r['seconds']:.1f} | "
            f"{r['seconds'] / r['duration']:.4f} | {r['words']} | {shown} |"
        )


if __name__ == "__main__":
    main()
