#!/bin/sh
# Data parallel under mpirun: np 2 with batch B/2 per rank trains the same model
# as np 1 with batch B (same global batch of samples; losses within 1e-5
# relative at every step, same val loss; 1 MB buckets, so the ~1.7 MB of gradients
# are reduced in two overlapped pieces), and a config error is reported once.
set -e
BUILD=${BUILD:-build}
CORPUS=${CORPUS:-/usr/share/games/fortunes}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL e2e_mpi: $*"; exit 1; }
command -v mpirun >/dev/null || fail "mpirun not found (run make deps)"
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN="mpirun --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -x LSAN_OPTIONS -x ASAN_OPTIONS"

"$BUILD/prep" --input "$CORPUS" --out "$tmp/data" --tokenizer byte 2>/dev/null || fail "prep failed"
cat > "$tmp/cfg.json" <<JSON
{"vocab_size": 256, "n_positions": 32, "n_embd": 128, "n_layer": 2, "n_head": 4,
 "lr": 2e-3, "warmup_steps": 5, "max_steps": 20, "precision": "fp32",
 "eval_every": 10, "eval_batches": 4, "log_every": 100, "data_dir": "$tmp/data"}
JSON
"$BUILD/trainer" --config "$tmp/cfg.json" --set batch_size=8 --set out_dir="$tmp/np1" 2>"$tmp/err1" ||
    { cat "$tmp/err1"; fail "np 1 run failed"; }
$MPIRUN -np 2 "$BUILD/trainer" --config "$tmp/cfg.json" --set batch_size=4 --set bucket_mb=1 --set out_dir="$tmp/np2" \
    >/dev/null 2>"$tmp/err2" || { cat "$tmp/err2"; fail "np 2 run failed"; }

python3 - "$tmp/np1/log.jsonl" "$tmp/np2/log.jsonl" <<'PY' || fail "np 1 and np 2 differ"
import json, sys
def load(p):
    recs = [json.loads(l) for l in open(p)]
    return ([r["loss"] for r in recs if r["type"] == "step"],
            [r["val_loss"] for r in recs if r["type"] == "eval"],
            [r["ranks"] for r in recs if r["type"] == "step"])
l1, v1, r1 = load(sys.argv[1])
l2, v2, r2 = load(sys.argv[2])
assert len(l1) == len(l2) == 20 and set(r1) == {1} and set(r2) == {2}
worst = max(abs(a - b) / abs(a) for a, b in zip(l1, l2))
assert worst < 1e-5, worst
assert len(v1) == len(v2) == 2 and all(abs(a - b) / a < 1e-5 for a, b in zip(v1, v2)), (v1, v2)
print("np1 vs np2: worst step loss difference %.2g relative" % worst)
PY

# a bad config: every rank refuses it, only rank 0 says so
if $MPIRUN -np 2 "$BUILD/trainer" --config "$tmp/cfg.json" --set n_head=3 >/dev/null 2>"$tmp/err3"; then
    fail "bad config accepted"
fi
[ "$(grep -c 'not divisible' "$tmp/err3")" -eq 1 ] || { cat "$tmp/err3"; fail "error not reported exactly once"; }
echo "PASS e2e_mpi"
