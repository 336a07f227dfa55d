#!/usr/bin/env bash
# KenLM's build_binary (ARPA -> binary LM, which loads faster), not shipped by pip's kenlm:
# compiled from kenlm's source distribution on PyPI into DEST (default .venv/bin).
# Needs g++ and nothing else (no Boost: build_binary does not use it). ~2 min on 2 cores.
set -euo pipefail
DEST=$(cd "${1:-.venv/bin}" && pwd)
PYTHON=${PYTHON:-$DEST/python}
[ -x "$DEST/build_binary" ] && exit 0
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PYTHON" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
    kenlm -d "$WORK"
tar xzf "$WORK"/kenlm-*.tar.gz -C "$WORK"
cd "$WORK"/kenlm-*/
export FLAGS="-I. -O2 -w -DNDEBUG -DKENLM_MAX_ORDER=6"
ls util/double-conversion/*.cc util/*.cc lm/*.cc | grep -v -e 'test\.cc$' -e 'main\.cc$' \
    | xargs -P 2 -I{} sh -c 'g++ $FLAGS -c {} -o {}.o'
# shellcheck disable=SC2046,SC2086
g++ $FLAGS lm/build_binary_main.cc $(ls util/double-conversion/*.o util/*.o lm/*.o) \
    -o "$DEST/build_binary" -lrt
echo "build_binary -> $DEST/build_binary"
