#!/usr/bin/env bash
# Kathleen dev's sentences read by voices the real-voice recipe never heard: Flite's four
# US-English voices (slt, rms, awb, kal16; built from other speakers' recordings, each
# clip with its own tempo, pitch and vocal-tract warp), two readings of every sentence.
# Kathleen dev is the training speaker; this is a stand-in for the other speakers the
# models are judged on. A diagnostic, never a tuning set: it reuses the run's tuned LM
# weights. Needs the flite program (Debian: apt-get install flite). Run through
# `make unseen-voices` (RUN=outputs/real_small_fast for the fast variant); reports go to
# $RUN/unseen-voices/eval-*.
set -euo pipefail
# shellcheck source=scripts/reports.sh
source "$(dirname "$0")/reports.sh"
RUN=${RUN:-outputs/real_small}
DATA=${ASR_SHARED_DATA:-../shared/data}
OUT="$RUN/unseen-voices"
BEAM=${BEAM:-256}
command -v flite >/dev/null || { echo "unseen_voices.sh: flite not found on PATH" >&2; exit 1; }
for f in "$RUN/best.pt" "$RUN/lm3.arpa" "$RUN/lm_tuning.json"; do
    [ -s "$f" ] || { echo "unseen_voices.sh: $f missing: run the recipe first" >&2; exit 1; }
done
mkdir -p "$OUT"

# the dev set's distinct sentences, normalised as the references are
N=$(python - "$DATA/kathleen/dev.jsonl" "$OUT/sentences.txt" <<'EOF'
import json, sys
from asr.text import normalize_text
with open(sys.argv[1], encoding="utf-8") as lines:
    texts = sorted({normalize_text(json.loads(line)["text"]) for line in lines if line.strip()})
with open(sys.argv[2], "w", encoding="utf-8") as out:
    out.write("".join(t + "\n" for t in texts))
print(len(texts))
EOF
)
for SEED in 0 1; do
    [ -s "$OUT/flite-seed$SEED/train.jsonl" ] ||
        asr-demo-corpus --read "$OUT/sentences.txt" -n "$N" --engine flite --seed "$SEED" \
            --out "$OUT/flite-seed$SEED"
done

reports "$RUN" "[$OUT/flite-seed0/train.jsonl,$OUT/flite-seed1/train.jsonl]" "$OUT" "$BEAM"
