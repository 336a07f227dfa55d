"""Beam search with a word 3-gram LM: ours against torchaudio's flashlight decoder and
pyctcdecode, on the same log-probs with the same beam.

The model runs once over a dev manifest; every decoder then searches the same log-prob
matrices on one core (one process, one thread) and the script prints utterances/s,
x-realtime and WER/CER. Decoders:

  ours, lexicon-free         asr.beam.BeamDecoder (lm_weight, word_bonus)
  ours, lexicon = LM words   the same search restricted to the LM's vocabulary
  flashlight, lexicon        torchaudio.models.decoder.ctc_decoder with the LM's words as
                             its lexicon (its lexicon-free mode takes no word LM)
  pyctcdecode                lexicon-free with kenlm; it pins numpy<2, so it runs in its
                             own venv (--pyctcdecode-python), fed the matrices through .npz

    python bench/bench_beam.py -m outputs/real_small/best.pt --lm outputs/real_small/lm3.arpa \
        --manifest ../shared/data/kathleen/dev.jsonl --pyctcdecode-python /tmp/pyctc/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PYCTC_CHILD = r"""
import json, sys, time
import numpy as np
from pyctcdecode import build_ctcdecoder
data = np.load(sys.argv[1])
cfg = json.loads(open(sys.argv[2]).read())
decoder = build_ctcdecoder(cfg["labels"], kenlm_model_path=cfg["lm"], alpha=cfg["alpha"],
                           beta=cfg["beta"])
mats = [data[f"u{i}"] for i in range(cfg["n"])]
decoder.decode(mats[0], beam_width=cfg["beam"])  # warm-up (LM load, caches)
start = time.perf_counter()
texts = [decoder.decode(m, beam_width=cfg["beam"]) for m in mats]
print(json.dumps({"seconds": time.perf_counter() - start, "texts": texts}))
"""


def emissions(model: str, manifest: str) -> tuple[list[np.ndarray], list, object, float]:
    from asr.manifest import read_manifest
    from asr.transcribe import Transcriber

    utts = read_manifest(manifest)
    transcriber = Transcriber.from_checkpoint(model, "cpu")
    mats = transcriber.file_emissions([u.audio_filepath for u in utts])
    return mats, utts, transcriber.loaded.tokenizer, sum(u.duration for u in utts)


def run_ours(mats, tokenizer, lm, beam, weight, bonus, lexicon) -> tuple[float, list[str]]:
    from asr.beam import BeamDecoder
    from asr.config import DecodingConfig

    cfg = DecodingConfig(
        method="beam", beam_size=beam, lm_path=lm, lm_weight=weight, word_bonus=bonus,
        lexicon=lexicon,
    )  # fmt: skip
    decoder = BeamDecoder(cfg, tokenizer, workers=1)
    one = torch.from_numpy(mats[0])[None]
    decoder(one, torch.tensor([one.shape[1]]))  # warm-up
    start = time.perf_counter()
    texts = []
    for m in mats:
        lp = torch.from_numpy(m)[None]
        texts.append(decoder(lp, torch.tensor([lp.shape[1]]))[0].text)
    return time.perf_counter() - start, texts


def run_flashlight(mats, tokenizer, lm, beam, weight, bonus, tmp) -> tuple[float, list[str]]:
    from torchaudio.models.decoder import ctc_decoder

    from asr.beam import read_arpa_unigrams

    tokens = [_flashlight_token(tokenizer, i) for i in range(len(tokenizer))]
    words = sorted(read_arpa_unigrams(lm))
    lexicon = Path(tmp) / "lexicon.txt"
    with open(lexicon, "w") as handle:
        for word in words:
            if word and all(c in tokens for c in word):
                handle.write(f"{word}\t{' '.join(word)} |\n")
    decoder = ctc_decoder(
        lexicon=str(lexicon), tokens=tokens, lm=lm, beam_size=beam, lm_weight=weight,
        word_score=bonus, blank_token="<b>", sil_token="|", unk_word="<unk>",
    )  # fmt: skip
    decoder(torch.from_numpy(mats[0])[None])  # warm-up
    start = time.perf_counter()
    texts = []
    for m in mats:
        best = decoder(torch.from_numpy(m)[None])[0][0]
        texts.append(" ".join(best.words))
    return time.perf_counter() - start, texts


def _flashlight_token(tokenizer, index: int) -> str:
    if index == tokenizer.blank_id:
        return "<b>"
    if index == tokenizer.space_id:
        return "|"
    return tokenizer.decode([index])


def run_pyctcdecode(python, mats, tokenizer, lm, beam, weight, bonus, tmp):
    labels = []
    for i in range(len(tokenizer)):
        labels.append("" if i == tokenizer.blank_id else " " if i == tokenizer.space_id
                      else tokenizer.decode([i]))  # fmt: skip
    npz = Path(tmp) / "mats.npz"
    np.savez(npz, **{f"u{i}": m for i, m in enumerate(mats)})
    cfg = Path(tmp) / "cfg.json"
    cfg.write_text(json.dumps({"labels": labels, "lm": lm, "alpha": weight, "beta": bonus,
                               "beam": beam, "n": len(mats)}))  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [python, "-c", PYCTC_CHILD, str(npz), str(cfg)],
        check=True, capture_output=True, text=True, env=env,
    ).stdout  # fmt: skip
    result = json.loads(out.strip().splitlines()[-1])
    return result["seconds"], result["texts"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", required=True)
    parser.add_argument("--lm", required=True, help="word n-gram ARPA")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--lm-weight", type=float, default=0.5)
    parser.add_argument("--word-bonus", type=float, default=0.0)
    parser.add_argument("--pyctcdecode-python", default="", help="python of a pyctcdecode venv")
    args = parser.parse_args()
    from asr.evaluate import score

    torch.set_num_threads(1)
    mats, utts, tokenizer, audio_s = emissions(args.model, args.manifest)
    common = (args.lm, args.beam, args.lm_weight, args.word_bonus)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(("ours, lexicon-free", *run_ours(mats, tokenizer, *common, "")))
        rows.append(("ours, lexicon = LM words", *run_ours(mats, tokenizer, *common, "lm")))
        rows.append(("flashlight, lexicon = LM words",
                     *run_flashlight(mats, tokenizer, *common, tmp)))  # fmt: skip
        if args.pyctcdecode_python:
            rows.append(("pyctcdecode, lexicon-free",
                         *run_pyctcdecode(args.pyctcdecode_python, mats, tokenizer, *common,
                                          tmp)))  # fmt: skip
    print(f"{len(mats)} utterances, {audio_s:.0f} s of audio; beam {args.beam}, "
          f"lm_weight {args.lm_weight}, word bonus {args.word_bonus}; one core each\n")  # fmt: skip
    print("| decoder | seconds | utterances/s | x realtime | WER | CER |")
    print("|---|---|---|---|---|---|")
    for name, seconds, texts in rows:
        errors = score([u.text for u in utts], texts)  # the project's normalisation + jiwer
        wer, cer = errors["wer"], errors["cer"]
        print(f"| {name} | {seconds:.2f} | {len(mats) / seconds:.1f} | "
              f"{audio_s / seconds:.0f} | {wer:.3f} | {cer:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
