# Sourced by real_small.sh and unseen_voices.sh: the greedy and beam + LM reports of a run's
# best.pt, the beam at the LM weight, word bonus, blank penalty and prior weight its tuning
# chose.
# reports RUN MANIFESTS OUT BEAM: MANIFESTS a Hydra list ("[a.jsonl,b.jsonl]"), reports go
# to OUT/eval-greedy and OUT/eval-beam.
reports() {
    local run=$1 manifests=$2 out=$3 beam=$4 weight bonus penalty prior
    read -r weight bonus penalty prior < <(python -c 'import json, sys
best = json.load(open(sys.argv[1]))["best"]
print(best["lm_weight"], best["word_bonus"], best["blank_penalty"], best.get("prior_weight") or 0)' \
        "$run/lm_tuning.json")
    echo "   beam $beam, lm_weight=$weight word_bonus=$bonus blank_penalty=$penalty" \
        "prior_weight=$prior"
    asr-evaluate checkpoint="$run/best.pt" manifests="$manifests" training_run="$run" \
        hydra.run.dir="$out/eval-greedy"
    asr-evaluate checkpoint="$run/best.pt" manifests="$manifests" training_run="$run" \
        decoding=beam decoding.beam_size="$beam" decoding.lm_path="$run/lm3.arpa" \
        decoding.lexicon=lm decoding.lm_weight="$weight" decoding.word_bonus="$bonus" \
        decoding.blank_penalty="$penalty" decoding.prior_weight="$prior" \
        hydra.run.dir="$out/eval-beam"
}
