"""Phone error rate of a phone model: its greedy phones against espeak-ng's for the reference.

A diagnostic for `data.units=phone` models, below the word level: it tells acoustic errors
from lexicon and LM ones, and set beside a sample of the training data it shows how much the
model memorises its training sentences. Word boundaries are left out on both sides.

    python scripts/phone_error_rate.py outputs/real_small/best.pt \
        ../shared/data/kathleen/dev.jsonl ../shared/data/fsdd/dev.jsonl --limit 200
"""

from __future__ import annotations

import argparse

import torch

from asr.audio import load_audio
from asr.checkpoint import LoadedModel, build_from_checkpoint
from asr.decoding import greedy_decode
from asr.manifest import read_manifest
from asr.metrics import word_counts
from asr.phones import PhoneTokenizer
from asr.text import normalize_text


def load_phone_model(checkpoint: str) -> LoadedModel:
    """The checkpoint's model; exits with a one-line message if it is not a phone model."""
    loaded = build_from_checkpoint(checkpoint)
    if not isinstance(loaded.tokenizer, PhoneTokenizer):
        raise SystemExit(f"{checkpoint}: not a phone model (data.units=phone)")
    return loaded


def phone_strings(loaded: LoadedModel, manifest: str, limit: int) -> tuple[list[str], list[str]]:
    """(reference phones, greedy phones) per utterance, as space-separated phone symbols."""
    tokenizer = loaded.tokenizer
    skip = {tokenizer.blank_id, tokenizer.space_id}
    references, hypotheses = [], []
    for utt in read_manifest(manifest)[: limit or None]:
        wave = torch.as_tensor(load_audio(utt.audio_filepath, loaded.features.spec.sample_rate))
        with torch.no_grad():
            feats, frames = loaded.features(wave[None], torch.tensor([wave.shape[0]]))
            log_probs, lengths = loaded.model(feats, frames)
        ids = greedy_decode(log_probs, lengths, tokenizer)[0].tokens
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_phone_model(args.checkpoint)
    for manifest in args.manifests:
        references, hypotheses = phone_strings(loaded, manifest, args.limit)
        counts = word_counts(references, hypotheses)
        print(
            f"{manifest}: PER {counts.rate:.4f} over {len(references)} utterances "
            f"({counts.substitutions} sub, {counts.deletions} del, {counts.insertions} ins, "
            f"{counts.reference_length} phones)"
        )


if __name__ == "__main__":
    main()
