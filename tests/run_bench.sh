#!/bin/sh
# make bench: kernel micro-benchmarks per ISA, then seed384 training (fp32,
# 20 steps) on byte-level data, then inference decode/prefill (seed384 and
# gpt2-124M).  Prints tables and writes every figure as a JSON line to
# $BUILD/bench.jsonl.
set -e
BUILD=${BUILD:-build}
CORPUS=${CORPUS:-/usr/share/games/fortunes}
STEPS=${BENCH_STEPS:-20}
export BENCH_JSONL="$BUILD/bench.jsonl"
: > "$BENCH_JSONL"

for b in "$BUILD"/tests/bench_*; do
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
    python3 - "$out/log.jsonl" "$name" "$BENCH_JSONL" <<'PY'
import json, statistics, sys
log, name, jsonl = sys.argv[1:4]
recs = [json.loads(l) for l in open(log)]
steps = [r for r in recs if r["type"] == "step"]
ranks = steps[0]["ranks"]
steps = steps[1:] or steps      # the first step pays for setup
done = [r for r in recs if r["type"] == "event" and r.get("message") == "done"][-1]
ms = statistics.median(r["step_ms"] for r in steps)
row = {"bench": "train", "work": name, "ms_per_step": round(ms, 1),
       "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in steps)),
       "mfu": round(statistics.median(r["mfu"] for r in steps), 3),
       "peak_gflops": done["peak_gflops"], "peak_rss_mb": round(done["peak_rss_mb"]),
       "ranks": ranks, "comm_ms": round(statistics.median(r["comm_ms"] for r in steps), 1),
       "loader_wait_ms": round(statistics.median(r["loader_wait_ms"] for r in steps), 2)}
print("%-28s %7.1f ms/step %6d tok/s  MFU %5.1f%% of the fp32 peak (%.0f GFLOP/s)  RSS %d MB (rank 0)  comm %.1f ms  loader wait %.2f ms" % (
      name, row["ms_per_step"], row["tokens_per_s"], 100 * row["mfu"], row["peak_gflops"],
      row["peak_rss_mb"], row["comm_ms"], row["loader_wait_ms"]))
open(jsonl, "a").write(json.dumps(row) + "\n")
PY
}

echo "== training ($STEPS steps, median step after the first)"
train_bench seed384-fp32 launch/configs/seed384.json --set precision=fp32
train_bench seed384-bf16 launch/configs/seed384.json --set precision=bf16
train_bench seed384-bf16-recompute launch/configs/seed384.json --set precision=bf16 --set recompute=block

echo "== data parallel, same global batch (8 x 256): np 1 x 2 threads above vs np 2 x 1 thread"
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
LAUNCH="mpirun --oversubscribe --bind-to core -np 2 -x OMP_NUM_THREADS=1"
train_bench seed384-bf16-np2-shm launch/configs/seed384.json --set precision=bf16 --set batch_size=4
train_bench seed384-bf16-np2-zero1 launch/configs/seed384.json --set precision=bf16 --set batch_size=4 --set zero_stage=1
LAUNCH="$LAUNCH --mca btl tcp,self"
train_bench seed384-bf16-np2-tcp launch/configs/seed384.json --set precision=bf16 --set batch_size=4
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
INFER_RUNS=${INFER_RUNS:-3}
echo "== inference (issue 8): batch 1, 16-token prompt, 240 new tokens, greedy; median of $INFER_RUNS runs"
# Random-init checkpoints are enough for speed: one training step writes them.
infer_ckpt() {   # name config extra-set... -> prints the checkpoint path
    out="$BUILD/runs/bench-infer-$1"; config=$2; shift 2
    if [ ! -f "$out/latest" ]; then
        "$BUILD/trainer" --config "$config" --set data_dir="$data" --set out_dir="$out" \
            --set max_steps=1 --set eval_every=0 --set status_endpoint=none \
            --set control_endpoint=none "$@" >/dev/null 2>"$out.stderr" || { cat "$out.stderr" >&2; exit 1; }
    fi
    echo "$out/$(cat "$out/latest")"
}
infer_bench() {   # work checkpoint quant
    for i in $(seq "$INFER_RUNS"); do "$BUILD/infer" --ckpt "$2" --quant "$3" --bench; done > "$BUILD/bench-infer.json" ||
        { echo "infer --bench failed" >&2; exit 1; }
    python3 - "$BUILD/bench-infer.json" "$1" "$BENCH_JSONL" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
med = lambda k: statistics.median(r[k] for r in runs)
row = {"bench": "infer", "work": sys.argv[2], "quant": runs[0]["quant"],
       "decode_tokens_per_s": round(med("decode_tokens_per_s"), 1),
       "prefill_tokens_per_s": round(med("prefill_tokens_per_s"), 1),
       "rss_mb": round(med("rss_mb"), 1), "weights_mb": runs[0]["weights_mb"],
       "threads": runs[0]["threads"], "runs": len(runs)}
print("%-10s %-5s decode %8.1f tok/s  prefill %8.1f tok/s  RSS %7.1f MB (weights %.1f MB)" % (
      row["work"], row["quant"], row["decode_tokens_per_s"], row["prefill_tokens_per_s"],
      row["rss_mb"], row["weights_mb"]))
open(sys.argv[3], "a").write(json.dumps(row) + "\n")
PY
}
ck=$(infer_ckpt seed384 launch/configs/seed384.json)
for q in int8 bf16 fp32; do infer_bench seed384 "$ck" $q; done
ck=$(infer_ckpt gpt2-124M launch/configs/gpt2-124M.json --set batch_size=1)
for q in int8 fp32; do infer_bench gpt2-124M "$ck" $q; done
echo "figures: $BENCH_JSONL"
