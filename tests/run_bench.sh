#!/bin/sh
# make bench: kernel micro-benchmarks per ISA, then seed384 training (fp32,
# 20 steps) on byte-level data.  Prints tables and writes every figure as a
# JSON line to $BUILD/bench.jsonl.
set -e
BUILD=${BUILD:-build}
CORPUS=${CORPUS:-/usr/share/games/fortunes}
STEPS=${BENCH_STEPS:-20}
export BENCH_JSONL="$BUILD/bench.jsonl"
: > "$BENCH_JSONL"

for b in "$BUILD"/tests/bench_*; do
    case $b in *bench_comm) continue ;; esac   # needs mpirun: run with the MPI rows below
    [ -x "$b" ] && "$b"
done

data="$BUILD/data/bench-bytes"
[ -f "$data/train.tok" ] || "$BUILD/prep" --input "$CORPUS" --out "$data" --tokenizer byte

train_bench() {   # name config extra-set...
    name=$1; config=$2; shift 2
    out="$BUILD/runs/bench-$name"
    rm -rf "$out"
    $LAUNCH "$BUILD/trainer" --config "$config" --set data_dir="$data" --set out_dir="$out" 2>"$BUILD/bench-$name.stderr" \
        --set max_steps="$STEPS" --set eval_every=0 --set log_every=5 --set warmup_steps=2 "$@" >/dev/null ||
        { cat "$BUILD/bench-$name.stderr"; exit 1; }
    # MPI rows (BENCH_TRANSPORT set): the fraction of the communication hidden
    # behind backward is 1 - exposed / alone, where exposed is comm_tail_ms
    # (what the last rank out of backward still waits for) and alone is
    # bench_comm's time for the same reduction on the same transport (rows
    # already in $BENCH_JSONL); under ZeRO the parameter allgather (never
    # hidden, timed inside the optimizer step) counts on both sides.
    python3 - "$out/log.jsonl" "$name" "$BENCH_JSONL" "${BENCH_TRANSPORT:-}" <<'PY'
import json, statistics, sys
log, name, jsonl, transport = sys.argv[1:5]
recs = [json.loads(l) for l in open(log)]
steps = [r for r in recs if r["type"] == "step"]
ranks = steps[0]["ranks"]
steps = steps[1:] or steps      # the first step pays for setup
done = [r for r in recs if r["type"] == "event" and r.get("message") == "done"][-1]
med = lambda k: statistics.median(r.get(k, 0) for r in steps)
row = {"bench": "train", "work": name, "ms_per_step": round(med("step_ms"), 1),
       "tokens_per_s": round(med("tokens_per_s")), "mfu": round(med("mfu"), 3),
       "peak_gflops": done["peak_gflops"], "peak_rss_mb": round(steps[-1].get("peak_rss_mb", 0)),
       "ranks": ranks, "comm_ms": round(med("comm_ms"), 1), "comm_tail_ms": round(med("comm_tail_ms"), 1),
       "optimizer_ms": round(med("optimizer_ms"), 1),
       "optimizer_mb": round(steps[-1]["optimizer_mb"], 1),
       "loader_wait_ms": round(med("loader_wait_ms"), 2)}
line = "%-30s %7.1f ms/step %6d tok/s  MFU %5.1f%%  peak RSS %4d MB (largest rank)  optimizer %5.1f ms, %5.1f MB/rank" % (
    name, row["ms_per_step"], row["tokens_per_s"], 100 * row["mfu"], row["peak_rss_mb"],
    row["optimizer_ms"], row["optimizer_mb"])
if transport:
    comm = {r["work"]: r["ms"] for r in map(json.loads, open(jsonl))
            if r.get("bench") == "comm" and r["transport"] == transport and r["ranks"] == ranks}
    zero = not name.endswith("-z0")
    alone = comm["pairwise reduce-scatter, buckets" if zero else "pairwise allreduce, buckets"]
    gather = comm["MPI_Allgatherv in place"] if zero else 0
    row.update(transport=transport, comm_alone_ms=round(alone + gather, 1),
               hidden=round(max(0.0, 1 - (row["comm_tail_ms"] + gather) / (alone + gather)), 2))
    line += "  comm exposed %6.1f ms of %6.1f ms alone (%3.0f%% hidden; waits up to %.1f ms with rank skew)" % (
        row["comm_tail_ms"] + gather, row["comm_alone_ms"], 100 * row["hidden"], row["comm_ms"] + gather)
    np1 = [r for r in map(json.loads, open(jsonl)) if r.get("work") == "seed384-bf16"]
    if np1:
        row["vs_np1"] = round(row["tokens_per_s"] / np1[-1]["tokens_per_s"], 3)
        line += "  %.0f%% of np 1 x 2 threads" % (100 * row["vs_np1"])
print(line)
open(jsonl, "a").write(json.dumps(row) + "\n")
PY
}

echo "== training ($STEPS steps, median step after the first)"
train_bench seed384-fp32 launch/configs/seed384.json --set precision=fp32
train_bench seed384-bf16 launch/configs/seed384.json --set precision=bf16
train_bench seed384-bf16-recompute launch/configs/seed384.json --set precision=bf16 --set recompute=block

echo "== data parallel, same global batch (8 x 256, bf16): np 1 x 2 threads (seed384-bf16 above) vs np 2 x 1 thread,"
echo "   ZeRO stages 0/1/2, shared memory and TCP loopback; the reductions alone first (bench_comm)"
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
params=$(sed -n 's/.*training \([0-9]*\) parameters.*/\1/p' "$BUILD/bench-seed384-bf16.stderr" | head -1)
for transport in shm tcp; do
    LAUNCH="mpirun --oversubscribe --bind-to core -np 2 -x OMP_NUM_THREADS=1"
    [ "$transport" = tcp ] && LAUNCH="$LAUNCH --mca btl tcp,self"
    $LAUNCH "$BUILD/tests/bench_comm" "$params" 25 "$transport"
    export BENCH_TRANSPORT=$transport
    for z in 0 1 2; do
        train_bench "seed384-bf16-np2-$transport-z$z" launch/configs/seed384.json --set precision=bf16 \
            --set batch_size=4 --set zero_stage=$z
    done
    unset BENCH_TRANSPORT
done
LAUNCH=
echo "== status publishing must not slow training: no socket / nobody listening / a stopped subscriber"
port=$((30000 + $$ % 20000))
train_bench status-none launch/configs/shakespeare_char.json --set max_steps=300 --set status_endpoint=none --set control_endpoint=none
train_bench status-no-subscriber launch/configs/shakespeare_char.json --set max_steps=300 --set status_endpoint="tcp://127.0.0.1:$port" --set control_endpoint=none
"$BUILD/monitor" --connect "tcp://127.0.0.1:$port" --json >/dev/null 2>&1 &
mon=$!
sleep 0.3
kill -STOP "$mon"   # a subscriber that never reads: its queue fills, the publisher drops
train_bench status-stopped-subscriber launch/configs/shakespeare_char.json --set max_steps=300 --set status_endpoint="tcp://127.0.0.1:$port" --set control_endpoint=none
kill -9 "$mon" 2>/dev/null || true
echo "figures: $BENCH_JSONL"
