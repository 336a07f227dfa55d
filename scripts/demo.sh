#!/usr/bin/env bash
# The embedded default, end to end on CPU: synthesise the espeak-ng demo corpus (cached),
# train the small model, evaluate on the test voices (never heard in training), transcribe
# one test file. Run through `make demo`, which puts .venv/bin on PATH.
set -euo pipefail
RUN=${RUN:-outputs/demo}

echo "== 1/4 demo corpus (cached under ~/.cache/asr; set ASR_CACHE_DIR to move it)"
asr-demo-corpus | tee /dev/stderr > "${TMPDIR:-/tmp}/asr-demo-manifests.tsv"
TEST=$(awk -F'\t' '$1=="test"{print $2}' "${TMPDIR:-/tmp}/asr-demo-manifests.tsv")

echo "== 2/4 training (run folder: $RUN)"
# resume=auto: a second `make demo` finishes (or reuses) the first run instead of clashing
asr-train experiment=demo hydra.run.dir="$RUN" train.resume=auto "$@"

echo "== 3/4 evaluation on unseen voices"
asr-evaluate checkpoint="$RUN/best.pt" manifests="[$TEST]" hydra.run.dir="$RUN/eval"

echo "== 4/4 transcription of one test file"
FILE=$(python - "$TEST" <<'PY'
import json, os, sys
manifest = sys.argv[1]
first = json.loads(open(manifest).readline())
print(os.path.join(os.path.dirname(manifest), first["audio_filepath"]))
print("reference:", first["text"], file=sys.stderr)
PY
)
asr-transcribe "$FILE" -m "$RUN/best.pt"
