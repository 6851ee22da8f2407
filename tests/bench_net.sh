#!/bin/sh
# make bench-net: data parallel over network links at real rates.  Two (or
# three) "hosts" on this machine (network namespaces on a bridge,
# tests/netns_hosts.sh), one rank each with half the config's batch, Open MPI
# over TCP, each host's link limited by tc tbf; for each model, gradient wire
# (grad_wire fp32, bf16) and link (shared memory: all ranks on one host, which
# then exchange through it with no wire, shm_exchange; then each rate) the median step time, exposed and total communication per step,
# the hidden fraction and npN / np1: the speed against one process with all
# the threads on the same global batch (tokens per second of np N over those
# of np 1).
#
#   BENCH_NET_MODELS  configs in launch/configs (default: seed384 gpt2-124M)
#   BENCH_NET_RATES   tc rates (default: 10gbit 1gbit)
#   BENCH_NET_WIRES   grad_wire values (default: fp32 bf16)
#   BENCH_NET_ZERO    zero_stage values (default: 1, the trainer's); rows of stages other than
#                     0 end in " zN"
#   BENCH_NET_HOSTS   hosts, one rank each (default 2; 3 puts 3 ranks on this
#                     machine's cores: compare its rates with its own shm row)
#   BENCH_STEPS       steps per run (default 20; the first 2 are not counted)
#   THREADS           threads of np 1 (default: this process's CPUs); np 2 ranks
#                     get half each
# Prints a table and writes each row as a JSON line to $BUILD/bench_net.jsonl.
# Needs root (namespaces, tc); otherwise prints "SKIP bench_net: ..." and exits 77.
set -e
BUILD=${BUILD:-build}
CORPUS=${CORPUS:-/usr/share/games/fortunes}
MODELS=${BENCH_NET_MODELS:-seed384 gpt2-124M}
RATES=${BENCH_NET_RATES:-10gbit 1gbit}
WIRES=${BENCH_NET_WIRES:-fp32 bf16}
ZEROS=${BENCH_NET_ZERO:-1}
STEPS=${BENCH_STEPS:-20}
HOSTS=${BENCH_NET_HOSTS:-2}
THREADS=${THREADS:-$(nproc)}
half=$((THREADS / 2 > 1 ? THREADS / 2 : 1))
out="$BUILD/bench_net.jsonl"
skip() { echo "SKIP bench_net: $*"; exit 77; }
fail() { echo "FAIL bench_net: $*"; exit 1; }
command -v mpirun >/dev/null || fail "mpirun not found (run make deps)"
[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces and tc"
command -v ip >/dev/null && command -v tc >/dev/null || skip "no ip or tc binary (apt-get install iproute2)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

tmp=$(mktemp -d)
. tests/netns_hosts.sh
cleanup() { set +e; hosts_down; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
hosts_up "$HOSTS" || skip "$hosts_error"

data="$BUILD/data/bench-bytes"
[ -f "$data/train.tok" ] || "$BUILD/prep" --input "$CORPUS" --out "$data" --tokenizer byte 2>/dev/null ||
    fail "prep failed"
: > "$out"

RUN="sh launch/run.sh --bind-to none"
addrs=$(for h in $host_names; do printf '%s,' "$(var ip "$h")"; done)
MULTI="$RUN --threads $half --hosts ${addrs%,} --tcp --iface $ipA/24 --mca plm_rsh_agent $tmp/netns-rsh"

# run NAME MODEL BATCH LAUNCHER... -- TRAINER_ARGS: one training run, its step
# records summarised into a row of $out (sh has no locals: run_* names only)
run() {
    run_name=$1 run_model=$2 run_batch=$3
    shift 3
    run_dir="$tmp/$(echo "$run_name" | tr ' ' '-')"   # no spaces: the remote rank's shell splits them
    "$@" --config "launch/configs/$run_model.json" --set data_dir="$data" --set out_dir="$run_dir" \
        --set max_steps="$STEPS" --set eval_every=0 --set log_every=100000 --set batch_size="$run_batch" \
        --set status_endpoint=none --set control_endpoint=none --set metrics_endpoint=none >/dev/null 2>"$tmp/err" ||
        { cat "$tmp/err"; fail "$run_name"; }
    python3 - "$run_dir/log.jsonl" "$run_name" "$out" <<'PY'
import json, statistics, sys
log, name, out = sys.argv[1:4]
steps = [r for r in map(json.loads, open(log)) if r["type"] == "step"]
steps = steps[2:] if len(steps) > 3 else steps   # the first steps pay for start-up
med = lambda k: statistics.median(r.get(k, 0) for r in steps)
row = {"bench": "net", "name": name, "steps": len(steps), "ranks": steps[-1]["ranks"],
       "tokens_per_rank": round(steps[-1]["tokens_per_s"] * steps[-1]["step_ms"] / 1e3 / steps[-1]["ranks"]), "step_ms": round(med("step_ms"), 1),
       "tokens_per_s": round(med("tokens_per_s")), "comm_exposed_ms": round(med("comm_exposed_ms"), 1),
       "comm_total_ms": round(med("comm_total_ms"), 1), "comm_hidden": round(med("comm_hidden"), 2)}
with open(out, "a") as f:
    f.write(json.dumps(row) + "\n")
PY
}

for model in $MODELS; do
    batch=$(python3 -c "import json; print(json.load(open('launch/configs/$model.json'))['batch_size'])")
    [ $((batch % 2)) -eq 0 ] || fail "$model: batch_size $batch does not split over 2 ranks"
    per=$((batch / 2))
    run "$model np1" "$model" $((per * HOSTS)) $RUN --threads "$THREADS" -n 1 --
    for wire in $WIRES; do
        for zero in $ZEROS; do
            z=$([ "$zero" = 0 ] || echo " z$zero")
            run "$model np$HOSTS $wire shm$z" "$model" "$per" $RUN --threads "$half" -n "$HOSTS" -o -- \
                --set grad_wire="$wire" --set zero_stage="$zero"
            for rate in $RATES; do
                link_rate "$rate"
                run "$model np$HOSTS $wire $rate$z" "$model" "$per" ip netns exec "$nsA" $MULTI -- \
                    --set grad_wire="$wire" --set zero_stage="$zero"
                link_rate none
            done
        done
    done
done

python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
np1 = {r["name"].split()[0]: r for r in rows if r["name"].endswith(" np1")}
print("%-28s %9s %9s %9s %7s %10s" % ("run", "step ms", "exposed", "comm", "hidden", "npN/np1"))
for r in rows:
    ref = np1[r["name"].split()[0]]
    r["npN_over_np1"] = round(r["tokens_per_s"] / ref["tokens_per_s"], 3)
    print("%-28s %9.0f %9.1f %9.1f %6.0f%% %10.3f" % (r["name"], r["step_ms"], r["comm_exposed_ms"],
          r["comm_total_ms"], 100 * r["comm_hidden"], r["npN_over_np1"]))
with open(sys.argv[1], "w") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")
PY
