"""The console scripts, run as a user runs them: subprocesses on a tiny config."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
from conftest import REPO, tiny_overrides

BIN = Path(sys.executable).parent


def run(
    args: list[str], cwd: Path, check: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def trained(tiny_corpus: Path, tmp_path_factory) -> Path:
    """A run folder made by `asr-train` on the tiny corpus."""
    run_dir = tmp_path_factory.mktemp("cli_run")
    overrides = tiny_overrides(tiny_corpus, **{"train.max_steps": 6, "train.checkpoint_every": 3})
    run([str(BIN / "asr-train"), *overrides, f"hydra.run.dir={run_dir}"], cwd=run_dir)
    return run_dir


def test_train_writes_run_folder(trained: Path) -> None:
    for name in ("best.pt", "step_00000006.pt", "metrics.csv", "summary.json", "train.log"):
        assert (trained / name).is_file(), name
    assert (trained / ".hydra" / "config.yaml").is_file()  # the resolved config
    assert json.loads((trained / "summary.json").read_text())["steps"] == 6


def test_evaluate_writes_reports(trained: Path, tiny_corpus: Path, tmp_path: Path) -> None:
    proc = run(
        [
            str(BIN / "asr-evaluate"),
            f"checkpoint={trained / 'best.pt'}",
            f"manifests=[{tiny_corpus / 'dev.jsonl'}]",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=tmp_path,
    )
    assert "WER" in proc.stdout
    name = f"{tiny_corpus.name}-dev"
    summary = json.loads((tmp_path / f"{name}.summary.json").read_text())
    assert summary["utterances"] == 6 and summary["cer"] >= 0.0
    rows = (tmp_path / f"{name}.utterances.tsv").read_text().splitlines()
    assert len(rows) == 7 and rows[0].startswith("audio_filepath\terrors")


def test_transcribe_prints_one_line_per_file(trained: Path, tiny_corpus: Path) -> None:
    files = sorted((tiny_corpus / "audio").glob("*.flac"))[:2]
    proc = run(
        [str(BIN / "asr-transcribe"), *map(str, files), "-m", str(trained / "best.pt")],
        cwd=tiny_corpus,
    )
    lines = proc.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(f) for f in files]


def test_bad_input_gives_one_line_errors(trained: Path, tmp_path: Path) -> None:
    missing = run(
        [str(BIN / "asr-transcribe"), str(tmp_path / "nope.wav"), "-m", str(trained / "best.pt")],
        cwd=tmp_path,
        check=False,
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"asr-transcribe: error: {tmp_path / 'nope.wav'}: file not found"
    ]
    broken = tmp_path / "broken.pt"
    broken.write_bytes((trained / "best.pt").read_bytes()[:1000])
    wav = next((trained.parent).rglob("*.flac"), None) or tmp_path / "x.wav"
    bad = run([str(BIN / "asr-transcribe"), str(wav), "-m", str(broken)], cwd=tmp_path, check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert str(broken) in bad.stderr and "truncated" in bad.stderr
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text('{"audio_filepath": "a.wav", "duration": 1.0}\n')
    proc = run(
        [
            str(BIN / "asr-train"),
            "model=tiny",
            f"data.train_manifests=[{manifest}]",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    assert f"{manifest}:1: missing key(s) text" in proc.stderr


@pytest.mark.slow
def test_regular_wheel_install_finds_configs(
    trained: Path, tiny_corpus: Path, tmp_path: Path
) -> None:
    """`pip install .` (not editable): console scripts run and Hydra finds conf/ in the wheel."""
    dist = tmp_path / "dist"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(REPO),
        ],
        cwd=tmp_path,
    )
    wheel = next(dist.glob("asr-*.whl"))
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    # Reuse this environment's dependencies (torch is 5 GB) but not its editable `asr`.
    site = Path(
        run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            cwd=tmp_path,
        ).stdout.strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        cwd=tmp_path,
    )
    where = run(
        [str(venv / "bin" / "python"), "-c", "import asr, asr.conf; print(asr.__file__)"],
        cwd=tmp_path,
    )
    assert str(venv) in where.stdout, where.stdout
    cfg = run([str(venv / "bin" / "asr-train"), "--cfg", "job", "experiment=fsdd"], cwd=tmp_path)
    assert "subsampling: 4" in cfg.stdout
    audio = sorted((tiny_corpus / "audio").glob("*.flac"))[0]
    out = run(
        [str(venv / "bin" / "asr-transcribe"), str(audio), "-m", str(trained / "best.pt")],
        cwd=tmp_path,
    )
    assert out.returncode == 0


def test_evaluate_writes_readable_reports_and_compares(
    trained: Path, tiny_corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    proc = run(
        [
            str(BIN / "asr-evaluate"),
            f"checkpoint={trained / 'best.pt'}",
            f"manifests=[{tiny_corpus / 'dev.jsonl'}]",
            f"training_run={trained}",
            "normalize=none",
            f"hydra.run.dir={out}",
        ],
        cwd=tmp_path,
    )
    assert "raw" in proc.stdout and "report.html" in proc.stdout
    name = f"{tiny_corpus.name}-dev"
    for suffix in ("summary.json", "report.json", "errors.txt", "utterances.tsv"):
        assert (out / f"{name}.{suffix}").is_file(), suffix
    summary = json.loads((out / f"{name}.summary.json").read_text())
    assert summary["normalize"] == "none" and summary["peak_rss_mb"] > 0
    assert {"wer_raw", "sentence_error_rate", "checkpoint_sha256"} <= set(summary)
    page = (out / "report.html").read_text()
    assert 'id="training"' in page and page.count("<svg") >= 3  # dev curve, length, errors
    assert (out / "report.md").read_text().startswith("# Evaluation report")
    same = run(
        [str(BIN / "asr-evaluate"), "compare", str(out), str(out), "-o", str(tmp_path / "cmp")],
        cwd=tmp_path,
    )
    assert "No significant difference" in same.stdout
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())[0]["bootstrap"]
    bad = run(
        [str(BIN / "asr-evaluate"), "compare", str(out), str(tmp_path / "nope")],
        cwd=tmp_path,
        check=False,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert bad.stderr.startswith("asr-evaluate compare: error:")


def test_evaluate_decodes_with_worker_processes(tiny_corpus: Path, tmp_path: Path) -> None:
    """Beam search over a test set in 2 processes gives what 1 process gives."""
    from conftest import random_checkpoint

    from asr.config import DecodingConfig, EvaluateConfig
    from asr.evaluate import evaluate

    model = random_checkpoint(tmp_path / "m.pt", scale=4.0)
    tables = []
    for workers in (1, 2):
        cfg = EvaluateConfig(
            checkpoint=str(model),
            manifests=[str(tiny_corpus / "dev.jsonl")],
            device="cpu",
            threads=1,
            num_workers=0,
            decode_workers=workers,
            max_batch_seconds=8.0,  # several batches, several utterances in each
            decoding=DecodingConfig(method="beam", beam_size=4),
        )
        out = tmp_path / f"w{workers}"
        evaluate(cfg, out)
        tables.append((out / f"{tiny_corpus.name}-dev.utterances.tsv").read_text())
    assert tables[0] == tables[1]
    hyps = [row.split("\t")[-1] for row in tables[0].splitlines()[1:]]
    assert any(hyps)  # the random model says something: the comparison is not vacuous


def test_evaluation_can_pad_every_clip_with_silence(tiny_corpus: Path, tmp_path: Path) -> None:
    """pad_seconds reaches the model (longer outputs), is recorded, and is checked."""
    from conftest import random_checkpoint

    from asr.checkpoint import build_from_checkpoint
    from asr.config import EvaluateConfig
    from asr.decoding import GreedyDecoder
    from asr.evaluate import decode_utterances, evaluate
    from asr.manifest import read_manifest

    model = random_checkpoint(tmp_path / "m.pt")
    loaded = build_from_checkpoint(model, torch.device("cpu"))
    utterances = read_manifest(tiny_corpus / "dev.jsonl")
    frames: dict[float, list[int]] = {}
    for pad in (0.0, 0.4):
        greedy = GreedyDecoder(loaded.tokenizer)

        def decoder(
            log_probs: torch.Tensor, lengths: torch.Tensor, pad: float = pad, greedy=greedy
        ) -> list:
            frames.setdefault(pad, []).extend(lengths.tolist())
            return greedy(log_probs, lengths)

        args = (loaded.model, loaded.features, loaded.tokenizer, utterances, torch.device("cpu"))
        decode_utterances(*args, decoder=decoder, pad_seconds=pad)
    # 0.8 s more audio is 80 more 10 ms feature frames, fewer after subsampling
    more = 80 // loaded.model.dims.subsampling
    growth = [b - a for a, b in zip(sorted(frames[0.0]), sorted(frames[0.4]), strict=True)]
    assert growth == [more] * 6
    cfg = EvaluateConfig(
        checkpoint=str(model), manifests=[str(tiny_corpus / "dev.jsonl")], device="cpu",
        threads=1, num_workers=0, pad_seconds=0.4,
    )  # fmt: skip
    evaluate(cfg, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / f"{tiny_corpus.name}-dev.summary.json").read_text())
    assert summary["pad_seconds"] == 0.4
    assert "0.4 s of silence around each clip" in (tmp_path / "out" / "report.md").read_text()
    with pytest.raises(ValueError, match=r"^pad_seconds must be in \[0, 60\], got -1"):
        evaluate(dataclasses.replace(cfg, pad_seconds=-1.0), tmp_path / "bad")
