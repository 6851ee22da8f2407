#!/bin/sh
# make bench-dp: data parallel over shared memory against one process, side by
# side on the same global batch.  Each round runs np 1 (THREADS threads, the
# config's batch) and then every np 2 variant (half the threads and half the
# batch per rank, started by launch/run.sh with its defaults plus the
# variant's options), so load that drifts on a shared host hits them alike;
# the summary is, per variant, the median over rounds of its median step time
# and of its speed against the same round's np 1 (np2/np1: tokens per second
# of np 2 over those of np 1).
#
#   BENCH_DP_MODEL   config in launch/configs (default seed384)
#   BENCH_DP_PREC    precision (default bf16)
#   BENCH_DP_ROUNDS  rounds (default 3)
#   BENCH_STEPS      steps per run (default 20; the first 2 are not counted)
#   BENCH_DP_RUNS    the np 2 variants, one per line: NAME;RUN_SH_OPTIONS;TRAINER_ARGS
#                    (default: stage 0 and ZeRO 1 with run.sh's defaults), e.g.
#                    "np2-none;--bind-to none;--set zero_stage=0"
#   THREADS          threads of np 1 (default: this process's CPUs)
# Prints a table; writes every run as a JSON line to $BUILD/bench_dp.jsonl and
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
np2-zero1;;--set zero_stage=1"}
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

# run ROUND NAME BATCH LAUNCHER... -- TRAINER_ARGS: one training run, its step
# records summarised into a row of $out
run() {
    run_round=$1 run_name=$2 run_batch=$3
    shift 3
    rm -rf "$tmp/run"
    "$@" --config "launch/configs/$MODEL.json" --set data_dir="$data" --set out_dir="$tmp/run" \
        --set max_steps="$STEPS" --set eval_every=0 --set log_every=100000 --set batch_size="$run_batch" \
        --set precision="$PREC" --set checkpoint_every=0 --set status_endpoint=none \
        --set control_endpoint=none --set metrics_endpoint=none </dev/null >/dev/null 2>"$tmp/err" ||
        { cat "$tmp/err"; fail "$run_name"; }
    { echo "== round $run_round $run_name"; cat "$tmp/err"; } >> "$log"
    python3 - "$tmp/run/log.jsonl" "$run_round" "$run_name" "$out" <<'PY'
import json, statistics, sys
log, rnd, name, out = sys.argv[1:5]
steps = [r for r in map(json.loads, open(log)) if r["type"] == "step"]
steps = steps[2:] if len(steps) > 3 else steps   # the first steps pay for start-up
med = lambda k: statistics.median(r.get(k, 0) for r in steps)
row = {"bench": "dp", "round": int(rnd), "name": name, "steps": len(steps),
       "ranks": steps[-1]["ranks"], "step_ms": round(med("step_ms"), 1),
       "tokens_per_s": round(med("tokens_per_s")), "optimizer_ms": round(med("optimizer_ms"), 1),
       "comm_exposed_ms": round(med("comm_exposed_ms"), 1), "comm_total_ms": round(med("comm_total_ms"), 1)}
with open(out, "a") as f:
    f.write(json.dumps(row) + "\n")
PY
}

r=1
while [ "$r" -le "$ROUNDS" ]; do
    run "$r" np1 "$batch" sh launch/run.sh -n 1 --threads "$THREADS" --
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
print("%-24s %6s %9s %9s %9s %9s %9s" % ("run", "rounds", "step ms", "tok/s", "optim ms",
                                          "exposed", "np2/np1"))
for n in names:
    rs = [r for r in rows if r["name"] == n]
    med = lambda k: statistics.median(r[k] for r in rs)
    ratio = statistics.median(r["tokens_per_s"] / np1[r["round"]]["tokens_per_s"] for r in rs)
    print("%-24s %6d %9.1f %9.0f %9.1f %9.1f %9.3f" % (n, len(rs), med("step_ms"), med("tokens_per_s"),
          med("optimizer_ms"), med("comm_exposed_ms"), ratio))
PY
