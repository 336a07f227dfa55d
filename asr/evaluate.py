"""Scoring a checkpoint on manifests: transcripts, WER and CER, written as reports.

``evaluate(cfg, output_dir)`` decodes each manifest and writes, per manifest,
``<name>.summary.json`` (WER/CER with S/D/I counts, utterances, words, real-time factor,
decoding settings and the checkpoint's hash) and ``<name>.utterances.tsv`` (one row per
utterance, sorted by errors, most first). All text is normalised the same way as training
targets before scoring.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import jiwer
import torch
from torch.utils.data import DataLoader

from asr.checkpoint import build_from_checkpoint, file_digest
from asr.config import DecodingConfig, EvaluateConfig
from asr.data import SpeechDataset, batches_by_duration, collate, worker_init
from asr.decoding import Decoder, GreedyDecoder
from asr.features import LogMel
from asr.io_utils import atomic_write, atomic_write_text
from asr.manifest import Utterance, read_manifest
from asr.metrics import char_counts, word_counts
from asr.model import CTCModel
from asr.text import CharTokenizer, normalize_text

log = logging.getLogger("asr.evaluate")


def make_decoder(cfg: DecodingConfig, tokenizer: CharTokenizer) -> Decoder:
    """The decoder the config asks for."""
    if cfg.method == "greedy":
        return GreedyDecoder(tokenizer)
    if cfg.method == "beam":
        from asr.beam import BeamDecoder  # optional engine: imported only when asked for

        return BeamDecoder(cfg, tokenizer)
    raise ValueError(f"decoding.method must be greedy|beam, got {cfg.method!r}")


@torch.no_grad()
def decode_utterances(
    model: CTCModel,
    features: LogMel,
    tokenizer: CharTokenizer,
    utterances: Sequence[Utterance],
    device: torch.device,
    max_batch_seconds: float = 200.0,
    num_workers: int = 0,
    decoder: Decoder | None = None,
) -> list[str]:
    """Transcripts for ``utterances`` in manifest order ("" for unreadable audio)."""
    decoder = decoder or GreedyDecoder(tokenizer)
    was_training = model.training
    model.eval()
    on_device = device.type == "cuda"
    dataset = SpeechDataset(
        utterances, None if on_device else features.cpu(), None, features.spec.sample_rate
    )
    if on_device:
        features.to(device)
    loader = DataLoader(
        dataset,
        batch_sampler=batches_by_duration([u.duration for u in utterances], max_batch_seconds),
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


def utterance_rows(utterances: Sequence[Utterance], hypotheses: Sequence[str]) -> list[dict]:
    """Per-utterance errors, most errors first."""
    rows = []
    for utt, hyp in zip(utterances, hypotheses, strict=True):
        ref, hyp_n = normalize_text(utt.text), normalize_text(hyp)
        counts = word_counts([ref], [hyp_n])
        rows.append(
            {
                "audio_filepath": utt.audio_filepath,
                "errors": counts.errors,
                "words": counts.reference_length,
                "wer": round(counts.rate, 4),
                "reference": ref,
                "hypothesis": hyp_n,
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


def evaluate(cfg: EvaluateConfig, output_dir: str | Path) -> dict[str, dict]:
    """Decode and score every manifest in ``cfg``; returns {manifest name: summary}."""
    from asr.train import pick_device, set_threads

    out = Path(output_dir)
    device = pick_device(cfg.device)
    set_threads(cfg.threads)
    loaded = build_from_checkpoint(cfg.checkpoint, device)
    decoder = make_decoder(cfg.decoding, loaded.tokenizer)
    digest = file_digest(cfg.checkpoint)
    if not cfg.manifests:
        raise ValueError("manifests is empty: give at least one manifest to evaluate")
    results = {}
    for manifest in cfg.manifests:
        utterances = read_manifest(manifest)
        name = _report_name(manifest)
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
        )
        elapsed = time.perf_counter() - start
        audio_s = sum(u.duration for u in utterances)
        summary = score([u.text for u in utterances], hyps)
        summary.update(
            manifest=str(manifest),
            checkpoint=str(cfg.checkpoint),
            checkpoint_sha256=digest,
            audio_seconds=round(audio_s, 2),
            decode_seconds=round(elapsed, 2),
            real_time_factor=round(elapsed / max(audio_s, 1e-9), 5),
            decoding=asdict(cfg.decoding),
            jiwer_version=jiwer.__version__ if hasattr(jiwer, "__version__") else "",
        )
        with atomic_write(out / f"{name}.summary.json") as handle:
            json.dump(summary, handle, indent=2)
        write_rows_tsv(out / f"{name}.utterances.tsv", utterance_rows(utterances, hyps))
        log.info(
            "%s: WER %.4f CER %.4f over %d utterances (RTF %.4f)",
            name,
            summary["wer"],
            summary["cer"],
            len(utterances),
            summary["real_time_factor"],
        )
        results[name] = summary
    return results


def _report_name(manifest: str | Path) -> str:
    """'../shared/data/fsdd/dev.jsonl' -> 'fsdd-dev': reports of several corpora stay apart."""
    path = Path(manifest)
    return f"{path.parent.name}-{path.stem}" if path.parent.name else path.stem
