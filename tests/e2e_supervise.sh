#!/bin/sh
# launch/run.sh --max-restarts on one host (np 2):
#   1. a rank killed mid-run: the supervisor starts the job again with
#      --resume auto, the restart is an event in log.jsonl (the supervisor's and
#      the trainer's own "restart 1"), the run finishes, and every step's loss
#      equals an uninterrupted run's;
#   2. a bad config (exit code 2) is not restarted, nor a run that diverged
#      (exit code 4: resumed, it would diverge again);
#   3. SIGTERM to the supervisor stops the job without a restart, exit code 0,
#      and the trainer's checkpoint is the last step it logged;
#   4. so does Ctrl-C (SIGINT to the terminal's process group) without
#      --max-restarts.
# First, the command run.sh builds from options of the user's that it also
# sets itself (--dry-run prints it, nothing runs): a --bind-to of the user's,
# or a --map-by with PE=N, which binds, replaces run.sh's --bind-to none;
# --ranks-per-node K gives K slots to each host of --hosts without a count,
# and a host's count other than K is refused, as is a --map-by of the user's
# with it; an option after one that takes a value is refused, not taken as
# the value.  And with a hostfile host that no longer answers, the restart's
# -n shrinks by the host's slots=, not its max_slots= (an mpirun of the
# test's own, which fails at once, shows the commands); and a SIGTERM that
# comes while run.sh prepares the start is not lost: the job is not started.
# --help prints on stdout.
set -e
NAME=e2e_supervise
. tests/lib_e2e.sh
need_mpirun
[ -x "$PY" ] || PY=python3

# run.sh --dry-run ARGS: what it prints (the command, or why not) in $said,
# its exit code in $rc; `true` as the program needs no build
dry() { rc=0; said=$(sh launch/run.sh --dry-run "$@" 2>&1 >/dev/null) || rc=$?; }
# refused: exit code 2 and one line, which names $1
refused() { [ "$rc" -eq 2 ] && [ "$(printf '%s\n' "$said" | wc -l)" -eq 1 ] && printf '%s' "$said" | grep -q -F -- "$1"; }
binds() { printf '%s\n' "$said" | grep -o -- '--*bind-to [^ ]*' | tr '\n' ' '; }
dry --threads 2 -- true
[ "$(binds)" = "--bind-to none " ] || fail "--threads 2: bindings '$(binds)' in: $said"
dry --threads 2 --bind-to core -- true
[ "$(binds)" = "--bind-to core " ] || fail "--threads 2 --bind-to core: bindings '$(binds)' in: $said"
dry --threads 2 --map-by slot:PE=2 -- true
[ -z "$(binds)" ] || fail "--threads 2 --map-by slot:PE=2: bindings '$(binds)' in: $said"
echo "dry run: the user's --bind-to or --map-by ...:PE=N replaces run.sh's --bind-to none"
dry --hosts a:2,b --ranks-per-node 2 -- true
case $said in *"--host a:2,b:2 "*) ;; *) fail "--hosts a:2,b --ranks-per-node 2 gave: $said" ;; esac
dry --hosts a:2,b:3 --ranks-per-node 2 -- true
refused b:3 || fail "--hosts a:2,b:3 --ranks-per-node 2 was not refused in one line naming b:3 (exit $rc): $said"
echo "dry run: --hosts a:2,b:3 --ranks-per-node 2 refused: $said"
dry --hosts a,b --ranks-per-node 2 --map-by node -- true
refused "--map-by" || fail "--ranks-per-node 2 --map-by node was not refused (exit $rc): $said"
echo "dry run: --ranks-per-node 2 --map-by node refused: $said"
for opt in --hosts --iface --hostfile; do
    dry $opt -o -- true
    refused "$opt needs a value" || fail "$opt -o: -o taken as its value (exit $rc): $said"
done
echo "dry run: an option where a value belongs refused: $said"
# --help on stdout and exit 0, as the programs of build/ (`run.sh --help | less`)
help=$(sh launch/run.sh --help 2>/dev/null) || fail "run.sh --help exited non-zero"
printf '%s\n' "$help" | grep -q -- "--max-restarts N" || fail "run.sh --help is not on stdout: '$help'"

sup=""
on_exit '[ -n "$sup" ] && kill "$sup" 2>/dev/null && wait "$sup" 2>/dev/null'
prep_bytes "$tmp/data"
# a model large enough that its 150 steps take seconds (about 15 ms each here):
# the rank killed after the second checkpoint must still be training
cat > "$tmp/cfg.json" <<JSON
{"vocab_size": 256, "n_positions": 128, "n_embd": 128, "n_layer": 4, "n_head": 4,
 "lr": 2e-3, "warmup_steps": 5, "max_steps": 150, "precision": "fp32",
 "batch_size": 4, "eval_every": 0, "log_every": 1000, "checkpoint_every": 10,
 "data_dir": "$tmp/data", "status_endpoint": "none", "control_endpoint": "none",
 "metrics_endpoint": "none"}
JSON
RUN="sh launch/run.sh -n 2 -o --threads 1 --bind-to none --kill-grace 2"

# A hostfile host that no longer answers: -n shrinks by its slots=, not by
# max_slots= on the same line.  An mpirun of the test's own logs each command
# and fails after one step; the rsh agent answers for no host.
mkdir "$tmp/fakebin"
printf '#!/bin/sh\necho "$*" >> "%s"\necho %s >> "%s"\nexit 1\n' "$tmp/fake.cmds" \
    "'{\"type\":\"step\",\"step\":1}'" "$tmp/fake/log.jsonl" > "$tmp/fakebin/mpirun"
printf '#!/bin/sh\nexit 255\n' > "$tmp/noanswer"
chmod +x "$tmp/fakebin/mpirun" "$tmp/noanswer"
mkdir "$tmp/fake"
printf 'localhost slots=2 max_slots=8\nlost slots=2\n' > "$tmp/hosts"
PATH="$tmp/fakebin:$PATH" sh launch/run.sh -n 4 --hostfile "$tmp/hosts" --max-restarts 1 \
    --mca plm_rsh_agent "$tmp/noanswer" -- --config "$tmp/cfg.json" --set out_dir="$tmp/fake" \
    2>"$tmp/err.fake" && fail "the failing job succeeded"
np=$(sed -n '2s/.* -np \([0-9]*\) .*/\1/p' "$tmp/fake.cmds")
[ "$np" = 2 ] || { cat "$tmp/err.fake"; fail "2 of 4 slots lost: the restart runs -np '$np', not 2"; }
echo "hostfile: a host lost, the restart runs -np $np (by slots=, not max_slots=)"

# SIGTERM while run.sh prepares the job's start (here: while it reads a
# log.jsonl that a slow grep stands for a long one in): the job is not started;
# a SIGUSR1 then has no job to save and is said to be dropped
mkdir "$tmp/slowbin"
printf '#!/bin/sh\ntouch "%s"\nexec sleep 20\n' "$tmp/slow.started" > "$tmp/slowbin/mpirun"
printf '#!/bin/sh\nsleep 2\nexec %s "$@"\n' "$(command -v grep)" > "$tmp/slowbin/grep"
chmod +x "$tmp/slowbin/mpirun" "$tmp/slowbin/grep"
t=$(date +%s)
PATH="$tmp/slowbin:$PATH" sh launch/run.sh -- --config "$tmp/cfg.json" --set out_dir="$tmp/fake" \
    2>"$tmp/err.slow" &
sup=$!
# sent once run.sh has its traps (SIGUSR1's is set last): it is then in the
# greps before the start, which take 4 s
SHOW_ON_FAIL="$tmp/err.slow" WATCH=$sup wait_for_handler "$sup" USR1 30
kill -USR1 "$sup"
kill -TERM "$sup"
rc=0
wait "$sup" || rc=$?
sup=""
[ ! -e "$tmp/slow.started" ] && [ $(($(date +%s) - t)) -lt 15 ] ||
    { cat "$tmp/err.slow"; fail "SIGTERM during the start: the job was started"; }
[ "$rc" -eq 143 ] || { cat "$tmp/err.slow"; fail "SIGTERM during the start: exit code $rc, not 143"; }
grep -q "no job is running: the checkpoint request (SIGUSR1) is dropped" "$tmp/err.slow" ||
    { cat "$tmp/err.slow"; fail "SIGUSR1 during the start: not said to be dropped"; }
echo "SIGUSR1 and SIGTERM while the job is being started: not started, exit code 143"
# the trainer processes of this test's out_dir $1 (by their own command line)
ranks_of() { ps -eo pid=,comm=,args= | awk -v d="$1" '$2 == "trainer" && index($0, d) { print $1 }'; }

# reference: uninterrupted
$RUN -- --config "$tmp/cfg.json" --set out_dir="$tmp/ref" >/dev/null 2>"$tmp/err.ref" ||
    { cat "$tmp/err.ref"; fail "reference run failed"; }

# 1. kill one rank after the second checkpoint
t0=$(date +%s)
$RUN --max-restarts 2 -- --config "$tmp/cfg.json" --set max_steps=150 --set out_dir="$tmp/sup" \
    >/dev/null 2>"$tmp/err.sup" &
sup=$!
SHOW_ON_FAIL="$tmp/err.sup" WATCH=$sup wait_for_record "$tmp/sup/log.jsonl" checkpoint 60 2
victim=$(ranks_of "$tmp/sup" | tail -1)
[ -n "$victim" ] || fail "no trainer process found"
kill -9 "$victim"
killed_at=$(date +%s.%N)
killed_step=$(count_records "$tmp/sup/log.jsonl" step)
# training again: a step record after the restart event
stepped_again() { [ -n "$(sed -n '/"restarts":1/,$p' "$tmp/sup/log.jsonl" | grep '"type":"step"' | head -1)" ]; }
SHOW_ON_FAIL="$tmp/err.sup" WATCH=$sup wait_until 60 "step after the restart event" stepped_again
again=$(date +%s.%N)
wait "$sup" || { cat "$tmp/err.sup"; fail "supervised run did not finish after the restart"; }
sup=""
[ "$(grep -c '^+ mpirun' "$tmp/err.sup")" -eq 2 ] || { cat "$tmp/err.sup"; fail "expected exactly one restart"; }
grep '^+ mpirun' "$tmp/err.sup" | tail -1 | grep -q -- '--resume auto' || fail "the restart has no --resume auto"
$PY - "$tmp/ref/log.jsonl" "$tmp/sup/log.jsonl" <<'PY' || { cat "$tmp/err.sup"; fail "supervised run"; }
import json, sys
ref = {r["step"]: r["loss"] for r in map(json.loads, open(sys.argv[1])) if r["type"] == "step"}
recs = [json.loads(l) for l in open(sys.argv[2])]
sup_ev = [r for r in recs if r["type"] == "event" and r.get("restarts") == 1]
assert sup_ev and "restart 1 of 2" in sup_ev[0]["message"], sup_ev
tr_ev = [r for r in recs if r["type"] == "event" and r.get("message", "").startswith("restart 1: ")]
assert tr_ev, "no trainer restart event"
done = [r for r in recs if r.get("message") == "done"]
assert done and done[-1]["step"] == 150, done
after = [r for r in recs[recs.index(sup_ev[0]):] if r["type"] == "step"]
assert after and after[-1]["step"] == 150
worst = max(abs(r["loss"] - ref[r["step"]]) / ref[r["step"]] for r in after)
assert worst < 1e-5, worst
print("rank killed: restarted at step %d (%s), %d steps after it match the uninterrupted run "
      "(worst %.2g relative)" % (after[0]["step"] - 1, tr_ev[0]["message"], len(after), worst))
PY
echo "rank killed at step $killed_step: training again after $($PY -c "print('%.1f' % ($again - $killed_at))") s"

# 1b. a job started with --resume PATH that fails before it saved a checkpoint
#     of its own starts again from PATH, not afresh from an empty out_dir
$RUN --max-restarts 1 -- --config "$tmp/cfg.json" --resume "$tmp/ref/ckpt_000150.h5" \
    --set max_steps=100000 --set checkpoint_every=0 --set out_dir="$tmp/from" \
    >/dev/null 2>"$tmp/err.from" &
sup=$!
SHOW_ON_FAIL="$tmp/err.from" WATCH=$sup wait_for_record "$tmp/from/log.jsonl" step 60 3
kill -9 "$(ranks_of "$tmp/from" | tail -1)"
SHOW_ON_FAIL="$tmp/err.from" WATCH=$sup wait_for_record "$tmp/from/log.jsonl" "event/restart 1: " 60
kill -TERM "$sup"
wait "$sup" || { cat "$tmp/err.from"; fail "the job resumed from a file did not stop cleanly"; }
sup=""
restarted=$(grep -F '"message":"restart 1: ' "$tmp/from/log.jsonl")
case $restarted in *"started again at step 150"*) ;;
*) cat "$tmp/err.from"; fail "--resume PATH, failed before a save: the restart was: $restarted" ;; esac
echo "--resume PATH, a rank killed before the first save: the restart resumed from PATH again"

# 2. a configuration error is not restarted
if $RUN --max-restarts 3 -- --config "$tmp/cfg.json" --set max_steps=-1 --set out_dir="$tmp/bad" \
    >/dev/null 2>"$tmp/err.bad"; then fail "a bad config succeeded"; else rc=$?; fi
[ "$rc" -eq 2 ] || { cat "$tmp/err.bad"; fail "bad config: exit code $rc, not 2"; }
[ "$(grep -c '^+ mpirun' "$tmp/err.bad")" -eq 1 ] || { cat "$tmp/err.bad"; fail "a bad config was restarted"; }
grep -q "not restarting" "$tmp/err.bad" || fail "no 'not restarting' message"
echo "bad config: exit code 2, not restarted"
if $RUN --max-restarts 3 -- --config "$tmp/cfg.json" --set max_steps=40 --set lr=1e30 \
    --set warmup_steps=0 --set out_dir="$tmp/diverge" >/dev/null 2>"$tmp/err.div"; then
    fail "a diverging run succeeded"
else rc=$?; fi
[ "$rc" -eq 4 ] || { cat "$tmp/err.div"; fail "diverged run: exit code $rc, not 4"; }
[ "$(grep -c '^+ mpirun' "$tmp/err.div")" -eq 1 ] || { cat "$tmp/err.div"; fail "a diverged run was restarted"; }
grep -q "the training diverged.*not restarting" "$tmp/err.div" || { cat "$tmp/err.div"; fail "no 'not restarting' message"; }
echo "diverged run: exit code 4, not restarted"

# 3. SIGTERM to the supervisor: the trainer saves, nothing restarts
$RUN --max-restarts 3 -- --config "$tmp/cfg.json" --set max_steps=100000 --set out_dir="$tmp/term" \
    >/dev/null 2>"$tmp/err.term" &
sup=$!
SHOW_ON_FAIL="$tmp/err.term" WATCH=$sup wait_for_record "$tmp/term/log.jsonl" step 60 20
kill -TERM "$sup"
term_at=$(date +%s.%N)
rc=0
wait "$sup" || rc=$?
sup=""
[ "$rc" -eq 0 ] || { cat "$tmp/err.term"; fail "a clean stop exited $rc"; }
saved_after=$($PY -c "import os,sys; print('%.1f' % (os.path.getmtime(sys.argv[1]) - float(sys.argv[2])))" \
    "$tmp/term/latest" "$term_at")
[ "$(grep -c '^+ mpirun' "$tmp/err.term")" -eq 1 ] || { cat "$tmp/err.term"; fail "SIGTERM led to a restart"; }
grep -q "stopped by a signal" "$tmp/err.term" || { cat "$tmp/err.term"; fail "no stop message"; }
$PY - "$tmp/term" <<'PY' || { cat "$tmp/err.term"; fail "SIGTERM checkpoint"; }
import json, sys
d = sys.argv[1]
recs = [json.loads(l) for l in open(d + "/log.jsonl")]
last = max(r["step"] for r in recs if r["type"] == "step")
latest = open(d + "/latest").read().strip()
assert latest == "ckpt_%06d.h5" % last, (latest, last)
assert not any(r.get("restarts") for r in recs)
print("SIGTERM: checkpoint %s is the last step logged" % latest)
PY
echo "SIGTERM to the supervisor: checkpoint written $saved_after s later"

# 4. Ctrl-C in a terminal (SIGINT to run.sh's whole process group) on a job
#    without --max-restarts: mpirun gets one signal, from run.sh, so the
#    trainer saves; run.sh exits 0
$PY - "$tmp/int" "$tmp/err.int" $RUN -- --config "$tmp/cfg.json" --set max_steps=100000 \
    --set out_dir="$tmp/int" <<'PY' || { cat "$tmp/err.int"; fail "Ctrl-C"; }
import os, signal, subprocess, sys, time
out, err, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
def session():   # a terminal's foreground job: its own group, SIGINT not ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.setsid()
p = subprocess.Popen(cmd, preexec_fn=session, stdout=subprocess.DEVNULL, stderr=open(err, "w"))
log, t0 = out + "/log.jsonl", time.time()
while time.time() - t0 < 60 and not (os.path.exists(log) and open(log).read().count('"step"') >= 20):
    time.sleep(0.2)
os.killpg(p.pid, signal.SIGINT)
rc = p.wait(timeout=90)
recs = [__import__("json").loads(l) for l in open(log)]
last = max(r["step"] for r in recs if r["type"] == "step")
latest = open(out + "/latest").read().strip()
assert rc == 0, ("exit code", rc)
assert latest == "ckpt_%06d.h5" % last, (latest, last)
print("Ctrl-C: exit 0, checkpoint %s is the last step logged" % latest)
PY
echo "PASS e2e_supervise ($(($(date +%s) - t0)) s)"
