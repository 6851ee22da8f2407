#!/bin/sh
# Multi-host training on this machine: two network namespaces, each a
# "host" with its own address (10.200.0.1 and 10.200.0.2 on a veth pair, only
# inside namespaces this test creates), mpirun started from host A through
# launch/run.sh with an rsh agent that enters host B's namespace instead of ssh,
# and Open MPI over TCP on the veth only.  Checks:
#   1. 20 steps across the two hosts (1 rank each) give the same losses as an
#      np 2 run on one host (within 1e-5 relative) -- and the traffic did cross
#      the veth (its byte counters); with the link limited to 1 Gbit/s (tc tbf)
#      the losses are the same and the limit did hold traffic back;
#   2. host B's link goes down mid-run: the job ends within 60 s with the
#      watchdog's "stuck or unreachable" (or mpirun naming the lost rank);
#   3. --resume auto on host A alone (np 1) continues from the last checkpoint
#      and its losses match the ones the two hosts had computed;
#   4. under launch/run.sh --max-restarts, host B's link goes down mid-run: the
#      supervisor leaves B out, finishes the run on host A alone, and the
#      losses after the restart equal those of a run resumed by hand.
# Without root, `ip` or network namespaces it prints "SKIP e2e_multihost: ..."
# and exits 77.
set -e
[ -n "$MH_TRACE" ] && set -x
NAME=e2e_multihost
. tests/lib_e2e.sh
need_mpirun
[ "$(id -u)" -eq 0 ] || skip "needs root to create network namespaces"
command -v ip >/dev/null || skip "no ip binary (apt-get install iproute2)"

job=""
. tests/netns_hosts.sh
on_exit 'kill -9 $job 2>/dev/null; hosts_down'
hosts_up || skip "$hosts_error"
prep_bytes "$tmp/data"
cat > "$tmp/cfg.json" <<JSON
{"vocab_size": 256, "n_positions": 32, "n_embd": 128, "n_layer": 2, "n_head": 4,
 "lr": 2e-3, "warmup_steps": 5, "max_steps": 20, "lr_decay_steps": 20, "precision": "fp32",
 "batch_size": 4, "eval_every": 0, "log_every": 100, "data_dir": "$tmp/data",
 "status_endpoint": "none", "control_endpoint": "none", "metrics_endpoint": "none"}
JSON
# both "hosts" are this machine: no binding (the two ranks would share core 0).
# Host B is noticed gone within ~6 s (keepalive 2 x 2 probes, below comm_timeout_s);
# a kill grace of 5 s (mpirun then sleeps 2 x 5 s) instead of 30 keeps the failure
# path short: the default 30 would end the job ~60-70 s after the cut.
RUN="sh launch/run.sh --threads 1 --bind-to none"
MH="$RUN --hosts $ipA,$ipB --tcp --iface $ipA/24 --mca plm_rsh_agent $tmp/netns-rsh \
    --keepalive 2 --kill-grace 5"
inA() { ip netns exec "$nsA" "$@"; }
t0=$(date +%s)

# 1. one host, np 2, against two hosts
$RUN -n 2 -o -- --config "$tmp/cfg.json" --set out_dir="$tmp/one" >/dev/null 2>"$tmp/err1" ||
    { cat "$tmp/err1"; fail "single-host np 2 run failed"; }
before=$(inA cat "/sys/class/net/$vA/statistics/tx_bytes")
timeout 120 ip netns exec "$nsA" $MH -- --config "$tmp/cfg.json" --set out_dir="$tmp/two" \
    >/dev/null 2>"$tmp/err2" || { cat "$tmp/err2"; fail "two-host run failed"; }
after=$(inA cat "/sys/class/net/$vA/statistics/tx_bytes")
grep -q "^+ mpirun .*--host $ipA,$ipB" "$tmp/err2" || { cat "$tmp/err2"; fail "launcher did not print its command"; }
sent=$((after - before))
# 20 steps x ~1.7 MB of gradients each way: far more than Open MPI's own wire-up
[ "$sent" -gt 20000000 ] || fail "only $sent bytes left host A over the veth: the ranks did not talk through it"
python3 - "$tmp/one/log.jsonl" "$tmp/two/log.jsonl" <<'PY' || fail "one host and two hosts differ"
import json, sys
load = lambda p: [(r["loss"], r["ranks"]) for r in map(json.loads, open(p)) if r["type"] == "step"]
a, b = load(sys.argv[1]), load(sys.argv[2])
assert len(a) == len(b) == 20 and {r for _, r in a} == {r for _, r in b} == {2}, (len(a), len(b))
worst = max(abs(x - y) / abs(x) for (x, _), (y, _) in zip(a, b))
assert worst < 1e-5, worst
print("one host np 2 vs two hosts: worst step loss difference %.2g relative" % worst)
PY
echo "two hosts: $((sent / 1000000)) MB sent over the veth by host A"

# 1b. the link limited to 1 Gbit/s (tc tbf on both ends): the shaper holds
# the gradient traffic back (it counts overlimits), the losses stay those of
# the unlimited link bit for bit, and the steps take at least the wire time
command -v tc >/dev/null || fail "no tc binary (apt-get install iproute2)"
link_rate 1gbit
timeout 120 ip netns exec "$nsA" $MH -- --config "$tmp/cfg.json" --set max_steps=6 --set out_dir="$tmp/slow" \
    >/dev/null 2>"$tmp/err2" || { cat "$tmp/err2"; fail "two-host run at 1 Gbit/s failed"; }
over=$(tc -n "$nsA" -s qdisc show dev "$vA" | sed -n 's/.*overlimits \([0-9]*\).*/\1/p' | head -1)
[ "${over:-0}" -gt 0 ] || { tc -n "$nsA" -s qdisc show dev "$vA"; fail "the 1 Gbit/s limit never held a packet back"; }
link_rate none
python3 - "$tmp/two/log.jsonl" "$tmp/slow/log.jsonl" <<'PY' || fail "1 Gbit/s link"
import json, sys
load = lambda p: [r for r in map(json.loads, open(p)) if r["type"] == "step"]
fast, slow = load(sys.argv[1]), load(sys.argv[2])
assert [r["loss"] for r in slow] == [r["loss"] for r in fast][:6], "losses differ at 1 Gbit/s"
# each step sends ~1.7 MB of gradients each way: >= 14 ms on a 1 Gbit/s wire
med = lambda rs, k: sorted(r[k] for r in rs[1:])[len(rs[1:]) // 2]
assert med(slow, "comm_total_ms") >= 10, med(slow, "comm_total_ms")
print("1 Gbit/s link: step %.0f ms, communication %.0f ms (%.0f exposed); unlimited: step %.0f ms, %.0f ms"
      % (med(slow, "step_ms"), med(slow, "comm_total_ms"), med(slow, "comm_exposed_ms"),
         med(fast, "step_ms"), med(fast, "comm_total_ms")))
PY

# 2. lose host B mid-run (its link goes down): the job must end, not hang.
# Its one checkpoint is asked for by SIGUSR1 (to one rank: the ranks agree on
# it), so the cut comes at least 3 steps after the checkpoint that 3. resumes
# from (a periodic one could land right before the cut: nothing to compare)
ip netns exec "$nsA" $MH -- --config "$tmp/cfg.json" --set max_steps=100000 --set lr_decay_steps=100000 \
    --set comm_timeout_s=10 --set out_dir="$tmp/cut" >/dev/null 2>"$tmp/err3" &
job=$!
SHOW_ON_FAIL="$tmp/err3" WATCH=$job wait_for_record "$tmp/cut/log.jsonl" step 60 2
rank=$(pgrep -f "out_dir=$tmp/cut" | while read -r p; do
    [ "$(cat /proc/"$p"/comm 2>/dev/null)" = trainer ] && echo "$p"; done | head -1)
[ -n "$rank" ] || fail "no trainer rank of the cut run found"
kill -USR1 "$rank"
SHOW_ON_FAIL="$tmp/err3" WATCH=$job wait_for_record "$tmp/cut/log.jsonl" checkpoint 60
# a few steps past the checkpoint, to compare with the resumed run
n=$(count_records "$tmp/cut/log.jsonl" step)
SHOW_ON_FAIL="$tmp/err3" WATCH=$job wait_for_record "$tmp/cut/log.jsonl" step 60 $((n + 3))
ip -n "$nsB" link set "$vB" down || fail "link down"
cut_at=$(date +%s)
poll 60 ended "$job" || { cat "$tmp/err3"; fail "job still running 60 s after host B was cut off"; }
ended=$(($(date +%s) - cut_at))
if wait "$job"; then job=""; fail "job exited 0 after losing host B"; fi
job=""
grep -q -E "stuck or unreachable|process rank|rank 1|lost" "$tmp/err3" ||
    { cat "$tmp/err3"; fail "no message about the lost rank"; }
echo "host B cut off: job ended after $ended s: $(grep -m1 -E 'stuck or unreachable|process rank' "$tmp/err3" | cut -c1-120)"
# host B's orphans (its rank, orted) cannot hear mpirun any more; the cleanup kills them
pids=$(ip netns pids "$nsB") && [ -n "$pids" ] && kill -9 $pids 2>/dev/null || :

# 3. host A alone resumes from the newest checkpoint (np 1, same global batch)
# the newest checkpoint on disk (saves are asynchronous: the log's checkpoint
# record can trail the file when the job is killed mid-write)
last=$(sed -n 's/^ckpt_0*\([0-9][0-9]*\)\.h5$/\1/p' "$tmp/cut/latest")
[ -n "$last" ] || fail "no checkpoint named in $tmp/cut/latest"
cp "$tmp/cut/log.jsonl" "$tmp/cut.before"
inA sh launch/run.sh -n 1 -- --config "$tmp/cfg.json" --set max_steps=$((last + 5)) --set lr_decay_steps=100000 \
    --set batch_size=8 --set out_dir="$tmp/cut" --resume auto >/dev/null 2>"$tmp/err4" ||
    { cat "$tmp/err4"; fail "resume on host A failed"; }
python3 - "$tmp/cut.before" "$tmp/cut/log.jsonl" "$last" <<'PY' || fail "resume on host A"
import json, sys
before = [json.loads(l) for l in open(sys.argv[1])]
recs = [json.loads(l) for l in open(sys.argv[2])][len(before):]
last = int(sys.argv[3])
ev = [r for r in recs if r["type"] == "event" and "resumed from" in r.get("message", json.dumps(r))]
assert ev, "no 'resumed from' event"
steps = [r for r in recs if r["type"] == "step"]
assert [r["step"] for r in steps] == list(range(last + 1, last + 6)), [r["step"] for r in steps]
assert {r["ranks"] for r in steps} == {1}
old = {r["step"]: r["loss"] for r in before if r["type"] == "step"}
common = [r for r in steps if r["step"] in old]
# the cut came 3 or more steps after the one checkpoint: those steps compare
assert len(common) >= 1, ("no step the two hosts trained after step %d" % last, max(old))
worst = max(abs(r["loss"] - old[r["step"]]) / old[r["step"]] for r in common)
assert worst < 1e-5, worst
print("resumed at step %d on host A alone: %d steps match the two-host run (worst %.2g relative)"
      % (last, len(common), worst))
PY

# 4. the supervisor: host B lost, the run finishes on host A alone.  Host B is
# cut off once two checkpoints (step 10) are logged, and the two hosts must
# still be training then: on the unlimited veth the 140 steps left take ~0.4 s
# (3 ms each), which a poll on a busy host can miss, and the job would end
# without a restart.  At 1 Gbit/s each step's ~1.7 MB of gradients take at
# least 14 ms on the wire whatever the CPU, so those steps last over 2 s; the
# rest runs on host A alone, where the link is not used.
ip -n "$nsB" link set "$vB" up || fail "link up again"
link_rate 1gbit
inA $MH --max-restarts 2 -- --config "$tmp/cfg.json" --set max_steps=150 --set lr_decay_steps=150 \
    --set checkpoint_every=5 --set keep_checkpoints=1000 --set comm_timeout_s=10 \
    --set out_dir="$tmp/sup" >/dev/null 2>"$tmp/err5" &
job=$!
SHOW_ON_FAIL="$tmp/err5" WATCH=$job wait_for_record "$tmp/sup/log.jsonl" checkpoint 60 2
ip -n "$nsB" link set "$vB" down || fail "link down"
cut_at=$(date +%s.%N)
# training again: a step record after the supervisor's restart event
stepped_again() { [ -n "$(sed -n '/"restarts":1/,$p' "$tmp/sup/log.jsonl" | grep -m1 '"type":"step"')" ]; }
SHOW_ON_FAIL="$tmp/err5" WATCH=$job wait_until 240 "step after the restart" stepped_again
again=$(date +%s.%N)
SHOW_ON_FAIL="$tmp/err5" wait_for_exit "$job" 240
wait "$job" || { cat "$tmp/err5"; fail "the supervised run failed after losing host B"; }
job=""
pids=$(ip netns pids "$nsB") && [ -n "$pids" ] && kill -9 $pids 2>/dev/null || :
grep -q "^+ mpirun .*--host $ipA " "$tmp/err5" || { cat "$tmp/err5"; fail "the restart did not leave host B out"; }
from=$(sed -n 's/.*"message":"resumed from \([^"]*\) at step.*/\1/p' "$tmp/sup/log.jsonl" | tail -1)
[ -n "$from" ] || fail "no 'resumed from' event after the restart"
inA sh launch/run.sh -n 1 -- --config "$tmp/cfg.json" --set max_steps=150 --set lr_decay_steps=150 \
    --set out_dir="$tmp/hand" --resume "$from" >/dev/null 2>"$tmp/err6" || { cat "$tmp/err6"; fail "resume by hand failed"; }
python3 - "$tmp/sup/log.jsonl" "$tmp/hand/log.jsonl" <<'PY' || { cat "$tmp/err5"; fail "supervised restart"; }
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
ev = [i for i, r in enumerate(recs) if r["type"] == "event" and r.get("restarts") == 1]
assert ev and "slots lost" in recs[ev[0]]["message"], [r for r in recs if r.get("restarts")]
after = [r for r in recs[ev[0]:] if r["type"] == "step"]
assert after and after[-1]["step"] == 150 and {r["ranks"] for r in after} == {1}
hand = {r["step"]: r["loss"] for r in map(json.loads, open(sys.argv[2])) if r["type"] == "step"}
assert sorted(hand) == [r["step"] for r in after], (min(hand), after[0]["step"])
worst = max(abs(r["loss"] - hand[r["step"]]) / hand[r["step"]] for r in after)
assert worst < 1e-5, worst
print("supervisor: %s; %d steps on host A alone equal a resume by hand (worst %.2g relative)"
      % (recs[ev[0]]["message"], len(after), worst))
PY
echo "host B lost: training again on host A after $(python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$cut_at" "$again") s"
echo "PASS e2e_multihost ($(($(date +%s) - t0)) s)"
