"""Phone error rate of a phone model: its greedy phones against espeak-ng's for the reference.

A diagnostic for `data.units=phone` models, below the word level: it tells acoustic errors
from lexicon and LM ones, and set beside a sample of the training data it shows how much the
model memorises its training sentences. Word boundaries are left out on both sides.

    python scripts/phone_error_rate.py outputs/real_small/best.pt \
        ../shared/data/kathleen/dev.jsonl ../shared/data/fsdd/dev.jsonl --limit 200

``--warp 1.1`` stretches every clip's log-mel spectrum along frequency by that factor before
the model (:func:`asr.features.frequency_warp`): a probe of how far a voice's PER moves with
its vocal-tract length.
"""

from __future__ import annotations

import argparse

import torch

from asr.decoding import greedy_decode
from asr.features import LogMel, frequency_warp
from asr.manifest import read_manifest
from asr.metrics import word_counts
from asr.phones import PhoneTokenizer
from asr.text import normalize_text
from asr.transcribe import Transcriber


def load_phone_model(checkpoint: str) -> Transcriber:
    """The checkpoint's model on the CPU; exits with a one-line message if it is not a phone
    model."""
    transcriber = Transcriber.from_checkpoint(checkpoint, "cpu")
    if not isinstance(transcriber.loaded.tokenizer, PhoneTokenizer):
        raise SystemExit(f"{checkpoint}: not a phone model (data.units=phone)")
    return transcriber


class WarpedLogMel(torch.nn.Module):
    """A checkpoint's front end with its output warped along frequency by one factor."""

    def __init__(self, features: LogMel, factor: float):
        super().__init__()
        self.inner, self.factor, self.spec = features, factor, features.spec

    def forward(
        self, wave: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        feats, frames = self.inner(wave, lengths)
        factors = torch.full((feats.shape[0],), self.factor)
        return frequency_warp(feats, factors, self.spec.f_min, self.spec.top_hz), frames


def phone_strings(
    transcriber: Transcriber, manifest: str, limit: int, speaker: str | None = None
) -> tuple[list[str], list[str]]:
    """(reference phones, greedy phones) per utterance, as space-separated phone symbols;
    with ``speaker``, only that speaker's utterances."""
    tokenizer = transcriber.loaded.tokenizer
    skip = {tokenizer.blank_id, tokenizer.space_id}
    utterances = [u for u in read_manifest(manifest) if speaker in (None, u.speaker)]
    utterances = utterances[: limit or None]
    emissions = transcriber.file_emissions(
        [u.audio_filepath for u in utterances], [u.byte_range for u in utterances]
    )
    references, hypotheses = [], []
    for utt, log_probs in zip(utterances, emissions, strict=True):
        frames = torch.tensor([log_probs.shape[0]])
        ids = greedy_decode(torch.from_numpy(log_probs)[None], frames, tokenizer)[0].tokens
        reference = tokenizer.encode(normalize_text(utt.text))
        references.append(" ".join(tokenizer.symbols[i] for i in reference if i not in skip))
        hypotheses.append(" ".join(tokenizer.symbols[i] for i in ids if i not in skip))
    return references, hypotheses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("manifests", nargs="+")
    parser.add_argument("--limit", type=int, default=0, help="first N utterances (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--speaker", help="only this speaker's utterances (manifest field)")
    parser.add_argument("--warp", type=float, default=1.0, help="frequency warp factor (1: off)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transcriber = load_phone_model(args.checkpoint)
    if args.warp != 1.0:
        loaded = transcriber.loaded
        loaded.features = WarpedLogMel(loaded.features, args.warp)
    for manifest in args.manifests:
        references, hypotheses = phone_strings(transcriber, manifest, args.limit, args.speaker)
        counts = word_counts(references, hypotheses)
        print(
            f"{manifest}: PER {counts.rate:.4f} over {len(references)} utterances "
            f"({counts.substitutions} sub, {counts.deletions} del, {counts.insertions} ins, "
            f"{counts.reference_length} phones)"
        )


if __name__ == "__main__":
    main()
