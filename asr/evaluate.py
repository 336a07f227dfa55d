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


def utterance_rows(report: ErrorReport) -> list[dict]:
    """Per-utterance errors, most errors first (the columns of ``utterances.tsv``)."""
    rows = []
    for utt in report.worst_first():
        row = utt.to_dict()
        rows.append(
            {
                "audio_filepath": report.meta.get("audio_filepaths", {}).get(utt.id, utt.id),
                **{k: row[k] for k in ("errors", "words", "wer", "reference", "hypothesis")},
                **{k: row[k] for k in ("substitutions", "deletions", "insertions")},
                "speaker": utt.speaker or "",
                "duration": utt.duration,
            }
        )
    return rows
def _report_name(manifest: str | Path) -> str:
    """'../shared/data/fsdd/dev.jsonl' -> 'fsdd-dev': reports of several corpora stay apart."""
    path = Path(manifest)
    return f"{path.parent.name}-{path.stem}" if path.parent.name else path.stem
