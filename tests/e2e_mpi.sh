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

# ZeRO stage 1: the optimizer state is sharded, the training is the same
$MPIRUN -np 2 "$BUILD/trainer" --config "$tmp/cfg.json" --set batch_size=4 --set zero_stage=1 \
    --set out_dir="$tmp/zero1" >/dev/null 2>"$tmp/err2" || { cat "$tmp/err2"; fail "np 2 zero_stage 1 run failed"; }

# the moments in a memory-mapped file (optimizer_offload file:DIR) change nothing
mkdir "$tmp/offload"
$MPIRUN -np 2 "$BUILD/trainer" --config "$tmp/cfg.json" --set batch_size=4 --set zero_stage=1 \
    --set optimizer_offload="file:$tmp/offload" --set out_dir="$tmp/zero1file" >/dev/null 2>"$tmp/err2" ||
    { cat "$tmp/err2"; fail "file offload run failed"; }
[ -z "$(ls "$tmp/offload")" ] || fail "offload files left behind"
python3 - "$tmp/zero1/log.jsonl" "$tmp/zero1file/log.jsonl" <<'PY' || fail "file offload changes the losses"
import json, sys
steps = lambda p: [r["loss"] for r in map(json.loads, open(p)) if r["type"] == "step"]
assert steps(sys.argv[1]) == steps(sys.argv[2])
PY
if "$BUILD/trainer" --config "$tmp/cfg.json" --set optimizer_offload=file:/nonexistent/dir \
    --set out_dir="$tmp/bad" 2>"$tmp/err6"; then fail "offload to a missing directory accepted"; fi
grep -q "optimizer_offload: cannot create" "$tmp/err6" || { cat "$tmp/err6"; fail "offload error message"; }

python3 - "$tmp/np1/log.jsonl" "$tmp/np2/log.jsonl" "$tmp/zero1/log.jsonl" <<'PY' || fail "np 1, np 2 and ZeRO runs differ"
import json, sys
def load(p):
    recs = [json.loads(l) for l in open(p)]
    return ([r["loss"] for r in recs if r["type"] == "step"],
            [r["val_loss"] for r in recs if r["type"] == "eval"],
            [r["ranks"] for r in recs if r["type"] == "step"])
l1, v1, r1 = load(sys.argv[1])
for path, name in ((sys.argv[2], "np2"), (sys.argv[3], "np2 zero1")):
    l2, v2, r2 = load(path)
    assert len(l1) == len(l2) == 20 and set(r1) == {1} and set(r2) == {2}
    worst = max(abs(a - b) / abs(a) for a, b in zip(l1, l2))
    assert worst < 1e-5, (name, worst)
    assert len(v1) == len(v2) == 2 and all(abs(a - b) / a < 1e-5 for a, b in zip(v1, v2)), (name, v1, v2)
    print("np1 vs %s: worst step loss difference %.2g relative" % (name, worst))
opt = lambda p: [r["optimizer_mb"] for r in map(json.loads, open(p)) if r["type"] == "step"][-1]
assert abs(opt(sys.argv[3]) * 2 - opt(sys.argv[2])) < 0.01, (opt(sys.argv[2]), opt(sys.argv[3]))
PY

# a bad config: every rank refuses it, only rank 0 says so
if $MPIRUN -np 2 "$BUILD/trainer" --config "$tmp/cfg.json" --set n_head=3 >/dev/null 2>"$tmp/err3"; then
    fail "bad config accepted"
fi
[ "$(grep -c 'not divisible' "$tmp/err3")" -eq 1 ] || { cat "$tmp/err3"; fail "error not reported exactly once"; }
# checkpoints do not depend on the rank count or ZeRO: a run of np 2 with
# zero_stage 1 resumed at step 10 continues bit-exactly, and np 1 picks it up too
$MPIRUN -np 2 "$BUILD/trainer" --config "$tmp/cfg.json" --set batch_size=4 --set zero_stage=1 \
    --set checkpoint_every=10 --set out_dir="$tmp/zfull" >/dev/null 2>"$tmp/err5" || { cat "$tmp/err5"; fail "zero1 run with checkpoints"; }
$MPIRUN -np 2 "$BUILD/trainer" --config "$tmp/cfg.json" --set batch_size=4 --set zero_stage=1 \
    --set out_dir="$tmp/zres" --resume "$tmp/zfull/ckpt_000010.h5" >/dev/null 2>"$tmp/err5" || { cat "$tmp/err5"; fail "zero1 resume"; }
"$BUILD/trainer" --config "$tmp/cfg.json" --set batch_size=8 --set out_dir="$tmp/zres1" \
    --resume "$tmp/zfull/ckpt_000010.h5" 2>"$tmp/err5" || { cat "$tmp/err5"; fail "np 1 resume of a zero1 checkpoint"; }
python3 - "$tmp/zfull/log.jsonl" "$tmp/zres/log.jsonl" "$tmp/zres1/log.jsonl" <<'PY' || fail "resumed runs differ"
import json, sys
steps = lambda p: {r["step"]: r["loss"] for r in map(json.loads, open(p)) if r["type"] == "step"}
a, b, c = (steps(p) for p in sys.argv[1:4])
assert all(a[k] == b[k] for k in range(11, 21)), "np 2 zero1 resume is not bit-exact"
worst = max(abs(a[k] - c[k]) / a[k] for k in range(11, 21))
assert worst < 1e-5, worst
print("resume of an np 2 zero1 checkpoint: bit-exact on np 2, %.2g relative on np 1" % worst)
PY

# control reaches every rank: a pause longer than comm_timeout_s does not trip
# the watchdog, resume continues, stop ends all ranks with exit 0
port=$((20000 + $$ % 20000))
$MPIRUN -np 2 "$BUILD/trainer" --config "$tmp/cfg.json" --set batch_size=4 --set max_steps=100000 \
    --set eval_every=0 --set comm_timeout_s=2 --set status_endpoint=none \
    --set control_endpoint="tcp://127.0.0.1:$port" --set out_dir="$tmp/ctl" >/dev/null 2>"$tmp/err7" &
job=$!
ctl() { "$BUILD/monitor" --control "tcp://127.0.0.1:$port" "$1" --timeout 10 >/dev/null; }
steps() { grep -c '"type":"step"' "$tmp/ctl/log.jsonl" 2>/dev/null || echo 0; }
i=0
while [ "$(steps)" -lt 3 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
ctl pause || { kill "$job"; fail "pause refused"; }
sleep 1; before=$(steps); sleep 3; after=$(steps)
[ "$before" -eq "$after" ] || { kill "$job"; fail "steps went on while paused ($before -> $after)"; }
ctl resume || { kill "$job"; fail "resume refused"; }
sleep 1
[ "$(steps)" -gt "$after" ] || { kill "$job"; fail "no steps after resume"; }
ctl checkpoint || { kill "$job"; fail "checkpoint refused"; }
i=0
while ! ls "$tmp/ctl"/ckpt_*.h5 >/dev/null 2>&1 && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
ls "$tmp/ctl"/ckpt_*.h5 >/dev/null 2>&1 || { kill "$job"; fail "no checkpoint after the checkpoint command"; }
sleep 0.5
[ "$(steps)" -gt "$after" ] || { kill "$job"; fail "training stopped after the checkpoint"; }
ctl stop || { kill "$job"; fail "stop refused"; }
i=0
while kill -0 "$job" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
wait "$job" || { cat "$tmp/err7"; fail "np 2 run did not exit 0 after stop"; }
echo "pause, resume, checkpoint and stop reach both ranks"

# a lost rank never hangs the job: killed (mpirun sees it) or stopped (the
# other rank's watchdog gives up after comm_timeout_s)
lose_rank() {   # signal, expected-stderr-pattern
    $MPIRUN -np 2 "$BUILD/trainer" --config "$tmp/cfg.json" --set batch_size=4 --set max_steps=100000 \
        --set eval_every=0 --set comm_timeout_s=5 --set out_dir="$tmp/lost" >/dev/null 2>"$tmp/err4" &
    job=$!
    i=0
    while [ ! -s "$tmp/lost/log.jsonl" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    sleep 1
    victim=$(pgrep -f "out_dir=$tmp/lost" | while read -r p; do
        [ "$(cat /proc/"$p"/comm 2>/dev/null)" = trainer ] && echo "$p"; done | tail -1)
    [ -n "$victim" ] || { kill "$job"; fail "no trainer rank found to $1"; }
    kill -"$1" "$victim"
    i=0
    while kill -0 "$job" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
    if kill -0 "$job" 2>/dev/null; then
        kill -9 "$job" "$victim" 2>/dev/null; fail "job still running 60 s after SIG$1 to a rank"
    fi
    wait "$job" && fail "job exited 0 after losing a rank"
    grep -q "$2" "$tmp/err4" || { cat "$tmp/err4"; fail "no message matching '$2' after SIG$1"; }
    echo "SIG$1 to a rank: job ended after $((i / 10)) s"
}
lose_rank KILL "process rank"
lose_rank STOP "stuck or unreachable"
echo "PASS e2e_mpi"
