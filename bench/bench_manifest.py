"""Manifest loading at scale: time and memory to read 100k and 1M lines.

Writes NeMo-style JSONL manifests of N synthetic lines (LibriSpeech-like paths, texts of
~30 words, a speaker field) to a temporary folder, then reads each in a fresh process,
with ``asr.manifest.read_manifest`` (a list of utterances) and with
``asr.manifest.ManifestIndex`` (lazy: positions and durations only), and reports wall time,
lines/s, the memory held (resident memory after minus before the read) and, for the lazy
index, the time of one random access. Paths
are not checked (``check_files=False``): with files on local disk the existence checks
add one ``stat`` per line, timed separately on 100k real files.

    python bench/bench_manifest.py --lines 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ["the", "of", "and", "to", "a", "in", "that", "he", "was", "it", "his", "is", "with"]


def write_manifest(path: Path, lines: int) -> None:
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(lines):
            speaker, chapter = 100 + i % 2400, 1000 + i % 97
            text = " ".join(rng.choice(WORDS) for _ in range(30))
            name = f"{speaker}/{chapter}/{speaker}-{chapter}-{i:06d}.flac"
            entry = {
                "audio_filepath": f"LibriSpeech/train/{name}",
                "duration": round(rng.uniform(1.0, 16.0), 3),
                "text": text,
                "speaker": str(speaker),
            }
            handle.write(json.dumps(entry) + "\n")


def resident_mb() -> float:
    """This process's resident memory now (Linux), not its peak."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def child(path: str, check_files: bool, lazy: bool) -> None:
    import asr.manifest  # noqa: F401  (libraries loaded before the baseline)

    base = resident_mb()
    started = time.perf_counter()
    if lazy:
        utts = asr.manifest.ManifestIndex([path], check_files=check_files)
    else:
        utts = asr.manifest.read_manifest(path, check_files=check_files)
    seconds = time.perf_counter() - started
    held = resident_mb() - base
    access = float("nan")
    if lazy:  # what a data-loader worker pays per item
        picks = random.Random(1).sample(range(len(utts)), min(20_000, len(utts)))
        started = time.perf_counter()
        for i in picks:
            utts[i]
        access = (time.perf_counter() - started) / len(picks)
    print(json.dumps({"lines": len(utts), "seconds": seconds, "mb": held, "access": access}))


def measure(path: Path, check_files: bool = False, lazy: bool = False) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(path), str(int(check_files)), str(int(lazy))],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], bool(int(args.child[1])), bool(int(args.child[2])))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="asr-manifest-") as tmp:
        for lines in args.lines:
            path = Path(tmp) / f"m{lines}.jsonl"
            write_manifest(path, lines)
            size = path.stat().st_size / 1e6
            rows.append((f"{lines:,} lines, read_manifest", size, measure(path)))
            rows.append((f"{lines:,} lines, ManifestIndex", size, measure(path, lazy=True)))
            path.unlink()
        # the cost of checking that each audio file exists: 100k empty files on local disk
        folder = Path(tmp) / "real"
        n = 100_000
        entries = []
        for i in range(n):
            (folder / f"{i % 100}").mkdir(parents=True, exist_ok=True)
            (folder / f"{i % 100}" / f"{i}.flac").touch()
            entries.append({"audio_filepath": f"{i % 100}/{i}.flac", "duration": 1.0, "text": "a"})
        checked = folder / "m.jsonl"
        checked.write_text("".join(json.dumps(e) + "\n" for e in entries))
        rows.append(("100,000 lines, files checked", checked.stat().st_size / 1e6,
                     measure(checked, True)))  # fmt: skip
        rows.append(("same, not checked", checked.stat().st_size / 1e6, measure(checked)))
    print(
        "| manifest | size (MB) | load time (s) | lines/s | memory held (MB) | bytes/line "
        "| random access (us) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, size, r in rows:
        access = "" if r["access"] != r["access"] else f"{r['access'] * 1e6:.0f}"
        print(
            f"| {name} | {size:.0f} | {r['seconds']:.2f} | {r['lines'] / r['seconds']:,.0f} | "
            f"{r['mb']:.0f} | {r['mb'] * 2**20 / r['lines']:.0f} | {access} |"
        )


if __name__ == "__main__":
    main()
