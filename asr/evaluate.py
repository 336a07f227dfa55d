"""Scoring a checkpoint on manifests: transcripts, WER and CER, written as reports.

``evaluate(cfg, output_dir)`` decodes each manifest and writes, per manifest ``<name>``
(``fsdd-dev`` for ``.../fsdd/dev.jsonl``):

- ``<name>.summary.json``: WER (normalised and raw), CER, sentence error rate, S/D/I counts,
  utterances, words, real-time factor, peak memory, decoding and normalisation settings,
  the checkpoint's hash;
- ``<name>.report.json``: the same plus per-utterance rows, ranked error pairs, per-word,
  per-speaker and per-length tables (what ``asr-evaluate compare`` reads);
- ``<name>.errors.txt``: icefall's errors file, each mistake in context;
- ``<name>.utterances.tsv``: one row per utterance, most errors first;

and, over all manifests, ``report.md`` (for pull requests) and ``report.html`` (one
self-contained page with plots, and training curves when ``training_run`` names a run
folder). Text is normalised as ``normalize`` says, by default like training targets.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from asr.checkpoint import LoadedModel, build_from_checkpoint, file_digest
from asr.config import DecodingConfig, EvaluateConfig
from asr.data import SpeechDataset, batches_by_duration, collate, worker_init
from asr.decoding import Decoder, GreedyDecoder
from asr.feature_cache import FeatureCache
from asr.features import LogMel
from asr.io_utils import atomic_write, atomic_write_text
from asr.manifest import Utterance, read_manifest
from asr.metrics import char_counts, word_counts
from asr.model import CTCModel
from asr.report import ErrorReport, get_normalizer, read_training_curves
from asr.report_html import html_report
from asr.report_text import errors_text, markdown_report
from asr.text import Tokenizer, normalize_text

log = logging.getLogger("asr.evaluate")


def make_decoder(
    cfg: DecodingConfig,
    tokenizer: Tokenizer,
    workers: int = 1,
    log_priors: Sequence[float] | None = None,
) -> Decoder:
    """The decoder the config asks for; ``workers``: beam search processes; ``log_priors``:
    the checkpoint's label priors, for ``cfg.prior_weight``."""
    if cfg.method == "greedy":
        return GreedyDecoder(tokenizer)
    if cfg.method == "beam":
        from asr.beam import BeamDecoder  # optional engine: imported only when asked for

        return BeamDecoder(cfg, tokenizer, workers, log_priors)
    raise ValueError(f"decoding.method must be greedy|beam, got {cfg.method!r}")


@torch.no_grad()
def decode_utterances(
    model: CTCModel,
    features: LogMel,
    tokenizer: Tokenizer,
    utterances: Sequence[Utterance],
    device: torch.device,
    max_batch_seconds: float = 200.0,
    num_workers: int = 0,
    decoder: Decoder | None = None,
    cache: FeatureCache | None = None,
    pad_seconds: float = 0.0,
) -> list[str]:
    """Transcripts for ``utterances`` in manifest order ("" for unreadable audio); features
    come from ``cache`` when it has them (CPU features only). ``pad_seconds``: silence
    added before and after each clip."""
    decoder = decoder or GreedyDecoder(tokenizer)
    was_training = model.training
    model.eval()
    on_device = device.type == "cuda"
    dataset = SpeechDataset(
        utterances,
        None if on_device else features.cpu(),
        None,
        features.spec.sample_rate,
        cache=cache,
        pad_seconds=pad_seconds,
    )
    if on_device:
        features.to(device)
    loader = DataLoader(
        dataset,
        batch_sampler=batches_by_duration(
            [u.duration + 2 * pad_seconds for u in utterances], max_batch_seconds
        ),
        collate_fn=collate,
        num_workers=num_workers,
        worker_init_fn=worker_init if num_workers else None,
    )
    texts = [""] * len(utterances)
    for batch in loader:
        for _, error in batch.failed:
            log.warning("skipped unreadable audio: %s", error)
        if not len(batch):
            continue
        inputs = batch.inputs.to(device)
        lengths = batch.input_lengths.to(device)
        if on_device:
            inputs, lengths = features(inputs, lengths)
        log_probs, out_lengths = model(inputs, lengths)
        for index, hyp in zip(batch.indices, decoder(log_probs, out_lengths), strict=True):
            texts[index] = hyp.text
    model.train(was_training)
    return texts


def score(references: Sequence[str], hypotheses: Sequence[str]) -> dict:
    """WER and CER (with S/D/I counts) over normalised references and hypotheses."""
    refs = [normalize_text(t) for t in references]
    hyps = [normalize_text(t) for t in hypotheses]
    words = word_counts(refs, hyps)
    chars = char_counts(refs, hyps)
    return {
        "wer": round(words.rate, 6),
        "cer": round(chars.rate, 6),
        "utterances": len(refs),
        "words": words.reference_length,
        "word_errors": words.to_dict(),
        "char_errors": chars.to_dict(),
    }


def utterance_ids(utterances: Sequence[Utterance]) -> list[str]:
    """Short names for report lines: audio file stems (member keys for tar shards), or whole
    paths if stems repeat."""
    stems = [u.extra.get("shard_key") or Path(u.audio_filepath).stem for u in utterances]
    if len(set(stems)) == len(stems):
        return stems
    return [
        u.audio_filepath if u.byte_range is None else f"{u.audio_filepath}@{u.byte_range[0]}"
        for u in utterances
    ]


def utterance_rows(utterances: Sequence[Utterance], report: ErrorReport) -> list[dict]:
    """Per-utterance errors, most errors first (the columns of ``utterances.tsv``)."""
    rows = []
    for utt, scored in zip(utterances, report.utterances, strict=True):
        row = scored.to_dict()
        rows.append(
            {
                "audio_filepath": utt.audio_filepath,
                **{k: row[k] for k in ("errors", "words", "wer", "reference", "hypothesis")},
                **{k: row[k] for k in ("substitutions", "deletions", "insertions")},
                "speaker": scored.speaker or "",
                "duration": utt.duration,
            }
        )
    rows.sort(key=lambda r: (-r["errors"], -r["wer"]))
    return rows


def write_rows_tsv(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=list(rows[0]) if rows else ["audio_filepath"], delimiter="\t"
    )
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def peak_memory(device: torch.device) -> dict:
    """Peak resident memory of this process so far, and of CUDA tensors since the last reset.

    ``ru_maxrss`` is a high-water mark for the whole process: it covers loading the model
    and every manifest decoded before, so later manifests can only report as much or more.
    """
    out: dict = {}
    try:
        import resource  # Unix only
    except ImportError:
        resource = None
    if resource is not None:
        usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Linux reports kilobytes, macOS bytes.
        out["peak_rss_mb"] = round(usage / (1 << 20 if sys.platform == "darwin" else 1 << 10), 1)
    if device.type == "cuda":
        out["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated(device) / (1 << 20), 1)
    return out


def _usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def evaluate(cfg: EvaluateConfig, output_dir: str | Path) -> dict[str, dict]:
    """Decode and score every manifest in ``cfg``, write the reports; {name: summary}."""
    from asr.runtime import pick_device, set_threads

    if not cfg.manifests:
        raise ValueError("manifests is empty: give at least one manifest to evaluate")
    get_normalizer(cfg.normalize)  # a bad name fails before the model loads
    if not 0 <= cfg.pad_seconds <= 60:
        raise ValueError(f"pad_seconds must be in [0, 60], got {cfg.pad_seconds}")
    # Read the curves first too: a wrong folder should not cost a whole decoding run.
    curves = read_training_curves(cfg.training_run) if cfg.training_run else None
    out = Path(output_dir)
    device = pick_device(cfg.device)
    set_threads(cfg.threads)
    loaded = build_from_checkpoint(cfg.checkpoint, device)
    if cfg.decode_workers < 0:
        raise ValueError(f"decode_workers must be >= 0, got {cfg.decode_workers}")
    workers = cfg.decode_workers or _usable_cores()
    settings = {
        "checkpoint": str(cfg.checkpoint),
        "checkpoint_sha256": file_digest(cfg.checkpoint),
        "decoding": asdict(cfg.decoding),
        "pad_seconds": cfg.pad_seconds,
        "device": str(device),
        "jiwer_version": _jiwer_version(),
    }
    reports = []
    with make_decoder(cfg.decoding, loaded.tokenizer, workers, loaded.log_priors) as decoder:
        for manifest in cfg.manifests:
            report = _evaluate_manifest(cfg, manifest, loaded, decoder, device, settings, out)
            reports.append(report)
    atomic_write_text(out / "report.md", markdown_report(reports, curves))
    atomic_write_text(out / "report.html", html_report(reports, curves))
    log.info("reports: %s", out / "report.html")
    return {report.name: report.summary() for report in reports}


def _evaluate_manifest(
    cfg: EvaluateConfig,
    manifest: str,
    loaded: LoadedModel,
    decoder: Decoder,
    device: torch.device,
    settings: dict,
    out: Path,
) -> ErrorReport:
    """Decode one manifest, time it, and write its JSON, TSV and errors reports."""
    utterances = read_manifest(manifest)
    name = _report_name(manifest)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    hyps = decode_utterances(
        loaded.model,
        loaded.features,
        loaded.tokenizer,
        utterances,
        device,
        cfg.max_batch_seconds,
        cfg.num_workers,
        decoder,
        pad_seconds=cfg.pad_seconds,
    )
    elapsed = time.perf_counter() - start
    # the audio decoded, silence pads included
    audio_s = sum(u.duration for u in utterances) + 2 * cfg.pad_seconds * len(utterances)
    meta = {
        "manifest": str(manifest),
        **settings,
        "audio_seconds": round(audio_s, 2),
        "decode_seconds": round(elapsed, 2),
        "real_time_factor": round(elapsed / max(audio_s, 1e-9), 5),
        **peak_memory(device),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    report = ErrorReport.build(
        [u.text for u in utterances],
        hyps,
        ids=utterance_ids(utterances),
        speakers=[u.speaker for u in utterances],
        durations=[u.duration for u in utterances],
        normalize=cfg.normalize,
        name=name,
        meta=meta,
    )
    _write_manifest_reports(out, name, report, utterances)
    t = report.total
    log.info(
        "%s: WER %.4f (raw %.4f) CER %.4f SER %.4f over %d utterances (RTF %.4f)",
        name,
        t.wer,
        report.raw.rate,
        report.chars.rate,
        t.sentence_error_rate,
        t.utterances,
        meta["real_time_factor"],
    )
    return report


def _write_manifest_reports(
    out: Path, name: str, report: ErrorReport, utterances: Sequence[Utterance]
) -> None:
    with atomic_write(out / f"{name}.summary.json") as handle:
        json.dump(report.summary(), handle, indent=2)
    with atomic_write(out / f"{name}.report.json") as handle:
        json.dump(report.to_dict(), handle, indent=1, ensure_ascii=False)
    atomic_write_text(out / f"{name}.errors.txt", errors_text(report))
    write_rows_tsv(out / f"{name}.utterances.tsv", utterance_rows(utterances, report))


def _jiwer_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jiwer")
    except PackageNotFoundError:
        return ""


def _report_name(manifest: str | Path) -> str:
    """'../shared/data/fsdd/dev.jsonl' -> 'fsdd-dev': reports of several corpora stay apart."""
    path = Path(manifest)
    return f"{path.parent.name}-{path.stem}" if path.parent.name else path.stem
