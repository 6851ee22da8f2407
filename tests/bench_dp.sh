#!/bin/sh
# make bench-dp: data parallel over shared memory against one process, side by
# side on the same global batch.  Each round runs np 1 (THREADS threads, the
# config's batch) and then every np 2 variant (half the threads and half the
# batch per rank, started by launch/run.sh with its defaults plus the
# variant's options), so load that drifts on a shared host hits them alike;
# the summary is, per variant, the median over rounds of its median step time
# and of its speed against the same round's np 1 (np2/np1: tokens per second
# of np 2 over those of np 1).  A row "2-alone" runs two independent
# trainers at once, each on its own half of the CPUs with half the batch and
# no exchange: what np 2's rank layout costs before any communication (its
# step is the slower one's, its tokens the sum; each runs the whole
# optimizer, which ZeRO 1 halves).
#
#   BENCH_DP_MODEL   config in launch/configs (default seed384)
#   BENCH_DP_PREC    precision (default bf16)
#   BENCH_DP_ROUNDS  rounds (default 3)
#   BENCH_STEPS      steps per run (default 20; the first 2 are not counted)
#   BENCH_DP_RUNS    the np 2 variants, one per line: NAME;RUN_SH_OPTIONS;TRAINER_ARGS
#                    (default: stage 0 and ZeRO 1 with run.sh's defaults, which exchange
#                    through shared memory, and ZeRO 1 by messages), e.g.
#                    "np2-none;--bind-to none;--set zero_stage=0"
#   THREADS          threads of np 1 (default: this process's CPUs)
# Prints a table (`comm cpu`: the exchange's progress thread's CPU time per
# step, comm_cpu_ms, which a hidden exchange still takes from the cores);
# writes every run as a JSON line to $BUILD/bench_dp.jsonl and
# its stderr to $BUILD/bench_dp.log.
set -e
BUILD=${BUILD:-build}
CORPUS=${CORPUS:-/usr/share/games/fortunes}
MODEL=${BENCH_DP_MODEL:-seed384}
PREC=${BENCH_DP_PREC:-bf16}
ROUNDS=${BENCH_DP_ROUNDS:-3}
STEPS=${BENCH_STEPS:-20}
THREADS=${THREADS:-$(nproc)}
half=$((THREADS / 2 > 1 ? THREADS / 2 : 1))
RUNS=${BENCH_DP_RUNS:-"np2-zero0;;--set zero_stage=0
np2-zero1;;--set zero_stage=1
np2-zero1-msg;;--set zero_stage=1 --set shm_exchange=0"}
out="$BUILD/bench_dp.jsonl" log="$BUILD/bench_dp.log"
NAME=bench_dp
. tests/lib_e2e.sh
command -v mpirun >/dev/null || skip "mpirun not found (run make deps)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

data="$BUILD/data/bench-bytes"
[ -f "$data/train.tok" ] || prep_bytes "$data"
batch=$(python3 -c "import json; print(json.load(open('launch/configs/$MODEL.json'))['batch_size'])")
[ $((batch % 2)) -eq 0 ] || fail "$MODEL: batch_size $batch does not split over 2 ranks"
: > "$out"
: > "$log"

# train OUT_DIR BATCH LAUNCHER... -- TRAINER_ARGS: one training run into OUT_DIR
train() {
    train_out=$1 train_batch=$2
    shift 2
    rm -rf "$train_out"
    "$@" --config "launch/configs/$MODEL.json" --set data_dir="$data" --set out_dir="$train_out" \
        --set max_steps="$STEPS" --set eval_every=0 --set log_every=100000 --set batch_size="$train_batch" \
        --set precision="$PREC" --set checkpoint_every=0 --set status_endpoint=none \
        --set control_endpoint=none --set metrics_endpoint=none </dev/null >/dev/null
}

# summarise ROUND NAME LOG...: the runs' step records as a row of $out (of
# several runs side by side: the slower one's step, the sum of their tokens)
summarise() {
    python3 - "$out" "$@" <<'PY'
import json, statistics, sys
out, rnd, name, logs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
def medians(log):
    steps = [r for r in map(json.loads, open(log)) if r["type"] == "step"]
    steps = steps[2:] if len(steps) > 3 else steps   # the first steps pay for start-up
    med = lambda k: statistics.median(r.get(k, 0) for r in steps)
    return len(steps), steps[-1]["ranks"], {k: med(k) for k in (
        "step_ms", "tokens_per_s", "optimizer_ms", "comm_exposed_ms", "comm_total_ms",
        "comm_cpu_ms")}
runs = [medians(log) for log in logs]
m = [r[2] for r in runs]
row = {"bench": "dp", "round": int(rnd), "name": name, "steps": runs[0][0],
       "ranks": sum(r[1] for r in runs) if len(runs) > 1 else runs[0][1],
       "step_ms": round(max(x["step_ms"] for x in m), 1),
       "tokens_per_s": round(sum(x["tokens_per_s"] for x in m)),
       "optimizer_ms": round(max(x["optimizer_ms"] for x in m), 1),
       "comm_exposed_ms": round(max(x["comm_exposed_ms"] for x in m), 1),
       "comm_total_ms": round(max(x["comm_total_ms"] for x in m), 1),
       "comm_cpu_ms": round(max(x["comm_cpu_ms"] for x in m), 1)}
with open(out, "a") as f:
    f.write(json.dumps(row) + "\n")
PY
}

# run ROUND NAME BATCH LAUNCHER... -- TRAINER_ARGS: one training run, its step
# records summarised into a row of $out
run() {
    run_round=$1 run_name=$2 run_batch=$3
    shift 3
    train "$tmp/run" "$run_batch" "$@" 2>"$tmp/err" || { cat "$tmp/err"; fail "$run_name"; }
    { echo "== round $run_round $run_name"; cat "$tmp/err"; } >> "$log"
    summarise "$run_round" "$run_name" "$tmp/run/log.jsonl"
}

# alone ROUND: two trainers at once, no exchange, each with half the CPUs
alone() {
    pids=
    for k in 0 1; do
        OMP_NUM_THREADS=$half train "$tmp/alone$k" $((batch / 2)) \
            taskset -c "$((k * half))-$((k * half + half - 1))" "$BUILD/trainer" 2>"$tmp/err$k" &
        pids="$pids $!"
    done
    rc=0
    for pid in $pids; do wait "$pid" || rc=1; done
    [ $rc -eq 0 ] || { cat "$tmp/err0" "$tmp/err1"; fail "2-alone"; }
    summarise "$1" 2-alone "$tmp/alone0/log.jsonl" "$tmp/alone1/log.jsonl"
}

r=1
while [ "$r" -le "$ROUNDS" ]; do
    run "$r" np1 "$batch" sh launch/run.sh -n 1 --threads "$THREADS" --
    [ "$THREADS" -ge 2 ] && alone "$r"
    printf '%s\n' "$RUNS" | while IFS=';' read -r name opts targs; do
        [ -n "$name" ] || continue
        # shellcheck disable=SC2086 # options and arguments are word lists
        run "$r" "$name" $((batch / 2)) sh launch/run.sh -n 2 --threads "$half" $opts -- $targs
    done
    r=$((r + 1))
done

python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
np1 = {r["round"]: r for r in rows if r["name"] == "np1"}
names = list(dict.fromkeys(r["name"] for r in rows))
print("%-24s %6s %9s %9s %9s %9s %9s %9s" % ("run", "rounds", "step ms", "tok/s", "optim ms",
                                              "exposed", "comm cpu", "np2/np1"))
for n in names:
    rs = [r for r in rows if r["name"] == n]
    med = lambda k: statistics.median(r[k] for r in rs)
    ratio = statistics.median(r["tokens_per_s"] / np1[r["round"]]["tokens_per_s"] for r in rs)
    print("%-24s %6d %9.1f %9.0f %9.1f %9.1f %9.1f %9.3f" % (n, len(rs), med("step_ms"),
          med("tokens_per_s"), med("optimizer_ms"), med("comm_exposed_ms"), med("comm_cpu_ms"),
          ratio))
PY
