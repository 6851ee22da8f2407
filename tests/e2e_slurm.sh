#!/bin/sh
# launch/slurm/train.sbatch on a one-node Slurm cluster that this test starts
# from Debian's packages (munged, slurmctld, slurmd as root; every file in a
# temporary directory; 2 CPUs; its own ports):
#   0. a job with a bad config fails with one error line, not one per rank;
#   1. a reference job runs uninterrupted;
#   2. a second job is requeued mid-run (scontrol requeue), then gets the
#      time-limit warning (SIGUSR1 to the batch script, as --signal=B:USR1@120
#      sends it), which saves and requeues it again; it finishes, and every
#      step's loss equals the reference's; each interruption left a checkpoint
#      of the last step logged;
#   3. scancel mid-run leaves a checkpoint of the last step logged.
# GPT_LAUNCHER=mpirun runs the jobs with mpirun instead of srun.
# Without root or the packages, or if Slurm does not come up, it prints SKIP
# and exits 77.
set -e
NAME=e2e_slurm
. tests/lib_e2e.sh
# --help describes the script without starting anything (no Slurm needed)
sh launch/slurm/train.sbatch --help >"$tmp/help.out" 2>&1 &&
    grep -q "^Launcher (environment GPT_LAUNCHER)" "$tmp/help.out" &&
    ! grep -q "^train.sbatch: job" "$tmp/help.out" ||
    { cat "$tmp/help.out"; fail "train.sbatch --help"; }
[ "$(id -u)" -eq 0 ] || skip "needs root to run slurmd"
for b in munged slurmctld slurmd sbatch scontrol squeue scancel; do
    command -v "$b" >/dev/null 2>&1 ||
        skip "no $b (apt-get install munge slurmctld slurmd slurm-client)"
done
[ -x "$PY" ] || PY=python3

chmod 755 "$tmp"   # munged wants a socket directory everyone can traverse
export SLURM_CONF="$tmp/slurm.conf"
pids=""
no_jobs() { [ -z "$(squeue -h 2>/dev/null)" ]; }
# the jobs cancelled and gone before the daemons stop; munged gone before its
# directory is removed
on_exit 'scancel --full -u root >/dev/null 2>&1 && poll 10 no_jobs
for p in $pids; do kill "$p" 2>/dev/null; done
for p in $pids; do wait "$p" 2>/dev/null; done
if [ -f "$tmp/munge/pid" ]; then
    m=$(cat "$tmp/munge/pid")
    kill "$m" 2>/dev/null
    poll 5 ended "$m"
fi'

# munge: a key and a socket of our own
mkdir -m 700 "$tmp/munge"
dd if=/dev/urandom of="$tmp/munge/key" bs=1024 count=1 2>/dev/null
chmod 400 "$tmp/munge/key"
munged --force --key-file="$tmp/munge/key" --socket="$tmp/munge/sock" --pid-file="$tmp/munge/pid" \
    --log-file="$tmp/munge/log" --seed-file="$tmp/munge/seed" 2>"$tmp/munge.err" ||
    skip "munged does not start: $(head -1 "$tmp/munge.err")"
chmod 755 "$tmp/munge"

set -- $(free_ports 2)
node=$(hostname -s)
mkdir "$tmp/state" "$tmp/spool"
cat > "$SLURM_CONF" <<EOF
ClusterName=gpte2e
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$1
SlurmdPort=$2
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/sock
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
JobRequeue=1
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
MinJobAge=600
KillWait=30
NodeName=$node NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=e2e Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -D -i >"$tmp/slurmctld.out" 2>&1 &
pids="$pids $!"
slurmd -D -N "$node" >"$tmp/slurmd.out" 2>&1 &
pids="$pids $!"
node_idle() { [ "$(sinfo -h -o %T 2>/dev/null)" = idle ]; }
if ! poll 30 node_idle; then
    why=$(cat "$tmp/slurmctld.out" "$tmp/slurmd.out" "$tmp/slurmctld.log" "$tmp/slurmd.log" 2>/dev/null |
          grep -i -m1 -E "error|fatal" || echo "node never idle")
    skip "Slurm did not come up: $why"
fi
version=$(sinfo -V)

prep_bytes "$tmp/data"
cat > "$tmp/cfg.json" <<JSON
{"vocab_size": 256, "n_positions": 128, "n_embd": 256, "n_layer": 4, "n_head": 4,
 "lr": 2e-3, "warmup_steps": 5, "max_steps": 120, "precision": "fp32",
 "batch_size": 8, "eval_every": 0, "log_every": 1000, "checkpoint_every": 10,
 "data_dir": "$tmp/data", "status_endpoint": "none", "control_endpoint": "none",
 "metrics_endpoint": "none"}
JSON
# the script resumes by itself: a --resume of the user's, which its own would
# silently override, is refused before anything starts
if BUILD=$BUILD bash launch/slurm/train.sbatch --config "$tmp/cfg.json" --resume "$tmp/x.h5" \
    2>"$tmp/resume.err"; then fail "train.sbatch took a --resume of its caller's"; fi
grep -q "resumes by itself" "$tmp/resume.err" || { cat "$tmp/resume.err"; fail "--resume refusal"; }
# 2 ranks of 1 thread: MPI inside the allocation.  The model is large enough
# (tens of ms a step) that a job is still running when the test signals it: a
# tiny one could finish all 120 steps between two polls, and Slurm then
# refuses to signal a job that has no batch step left.
submit() {   # out_dir, then trainer arguments; prints the job id
    d=$1; shift
    sbatch --parsable --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --output="$tmp/$d.out" \
        launch/slurm/train.sbatch --config "$tmp/cfg.json" --set out_dir="$tmp/$d" "$@"
}
state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
steps() { count_records "$1/log.jsonl" step; }
last_step() { grep '"type":"step"' "$1/log.jsonl" | tail -1 | sed 's/.*"step":\([0-9]*\).*/\1/'; }
done_job() { case $(state "$1") in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL) return 0 ;; esac; return 1; }
pending() { [ "$(state "$1")" = PENDING ]; }
more_steps() { [ "$(steps "$1")" -ge "$2" ]; }
ckpts() { count_records "$1/log.jsonl" checkpoint; }
# a checkpoint newer than the $2-th, of the last step logged, is on disk (latest names it)
saved_last() {
    [ "$(ckpts "$1")" -gt "$2" ] && [ -f "$1/latest" ] &&
        [ "$(cat "$1/latest")" = "$(printf 'ckpt_%06d.h5' "$(last_step "$1")")" ]
}
since() { $PY -c "import time,sys; print('%.1f' % (time.time() - float(sys.argv[1])))" "$1"; }
now() { date +%s.%N; }
# A requeued job waits for Slurm's requeue delay (about 2 minutes): start it
# now, once the node is idle and the kill is over a second old -- slurmd refuses
# a job whose credential is not newer than the kill, in whole seconds ("Job N
# already killed, do not launch batch job"), which that delay otherwise covers.
# scontrol and scancel refuse a job still in a transition state (completing,
# requeueing) with a non-zero exit (Slurm's error number modulo 256): ask again
# for a while, then fail saying what Slurm said, instead of set -e's silent exit
slurm_retry() {
    poll 30 "$@" 2>"$tmp/scontrol.err" || fail "$* kept failing: $(cat "$tmp/scontrol.err")"
}
start_now() {
    poll 60 node_idle || fail "node not idle: $(sinfo -h -o %T)"
    sleep 2   # Slurm's rule in whole seconds (above), not an event to wait for
    slurm_retry scontrol update jobid="$1" StartTime=now
}

# 0. a bad config: one line from the trainer, not one per rank (srun's ranks
#    know no OMPI_COMM_WORLD_RANK before MPI starts), and the job fails
bad=$(submit bad --set max_steps=-1) || fail "sbatch refused the job"
poll 120 done_job "$bad" || { cat "$tmp/bad.out"; fail "the job with a bad config did not end"; }
[ "$(state "$bad")" = FAILED ] || { cat "$tmp/bad.out"; fail "bad config: job $(state "$bad")"; }
[ "$(grep -c '^trainer: ' "$tmp/bad.out")" -eq 1 ] || { cat "$tmp/bad.out"; fail "bad config: not one error line"; }
echo "bad config: one line, job FAILED: $(grep '^trainer: ' "$tmp/bad.out")"

# 1. reference
ref=$(submit ref) || fail "sbatch refused the job"
poll 300 done_job "$ref" || { cat "$tmp/ref.out"; fail "reference job did not end in 300 s"; }
[ "$(state "$ref")" = COMPLETED ] || { cat "$tmp/ref.out"; fail "reference job: $(state "$ref")"; }

# 2. requeue, then the time-limit warning
job=$(submit req) || fail "sbatch refused the job"
poll 300 more_steps "$tmp/req" 15 || { cat "$tmp/req.out"; fail "no 15 steps in 300 s"; }
c0=$(ckpts "$tmp/req")
slurm_retry scontrol requeue "$job"
t=$(now)
poll 60 saved_last "$tmp/req" "$c0" || { cat "$tmp/req.out"; fail "requeue: no checkpoint of the last step"; }
requeue_s=$(since "$t")
poll 60 pending "$job" || fail "requeued job not pending: $(state "$job")"
start_now "$job"
poll 300 more_steps "$tmp/req" 35 || { cat "$tmp/req.out"; fail "requeued job did not go on"; }
c0=$(ckpts "$tmp/req")
slurm_retry scancel --batch -s USR1 "$job"   # what --signal=B:USR1@120 sends before the time limit
t=$(now)
poll 60 saved_last "$tmp/req" "$c0" || { cat "$tmp/req.out"; fail "time-limit signal: no checkpoint of the last step"; }
usr1_s=$(since "$t")
poll 60 pending "$job" || { cat "$tmp/req.out"; fail "the job did not requeue itself: $(state "$job")"; }
start_now "$job"
why() {   # what Slurm says about job $1
    scontrol show job "$1" | grep -E "JobState|Restarts|ExitCode" | tr -s ' '
    grep -E "JobId=$1( |$)|job_?id[ =]$1\b" "$tmp/slurmctld.log" | tail -5
    grep -i -E "error|fail" "$tmp/slurmd.log" | tail -5
}
poll 300 done_job "$job" || { cat "$tmp/req.out"; why "$job"; fail "requeued job did not finish"; }
[ "$(state "$job")" = COMPLETED ] || { cat "$tmp/req.out"; why "$job"; fail "requeued job: $(state "$job")"; }
$PY - "$tmp/ref/log.jsonl" "$tmp/req/log.jsonl" <<'PY' || { cat "$tmp/req.out"; fail "requeued job"; }
import json, sys
ref = {r["step"]: r["loss"] for r in map(json.loads, open(sys.argv[1])) if r["type"] == "step"}
recs = [json.loads(l) for l in open(sys.argv[2])]
steps = [r for r in recs if r["type"] == "step"]
# each start resumed at the step it stopped at: no step twice, none missing
assert [r["step"] for r in steps] == list(range(1, 121)), [r["step"] for r in steps]
bad = [(r["step"], r["loss"], ref[r["step"]]) for r in steps if r["loss"] != ref[r["step"]]]
assert not bad, bad[:5]
starts = [r["message"] for r in recs if r["type"] == "event" and r["message"].startswith("restart ")]
assert len(starts) == 2 and starts[0].startswith("restart 1: ") and starts[1].startswith("restart 2: "), starts
# the time-limit stop landed mid-run, not after the last step
assert int(starts[1].rsplit(" ", 1)[1]) < 120, starts
print("requeued twice (%s; %s): 120 steps, every loss equal to the uninterrupted job's" % tuple(starts))
PY

# 3. scancel
job=$(submit cancel --set max_steps=100000) || fail "sbatch refused the job"
poll 300 more_steps "$tmp/cancel" 15 || { cat "$tmp/cancel.out"; fail "no 15 steps in 300 s"; }
c0=$(ckpts "$tmp/cancel")
slurm_retry scancel "$job"
t=$(now)
poll 60 saved_last "$tmp/cancel" "$c0" || { cat "$tmp/cancel.out"; fail "scancel: no checkpoint of the last step"; }
cancel_s=$(since "$t")
poll 90 done_job "$job" || fail "cancelled job still $(state "$job")"
saved_last "$tmp/cancel" "$c0" || fail "scancel: the last step logged is not the checkpoint"
echo "scancel: checkpoint $(cat "$tmp/cancel/latest") is the last step logged"
echo "$version, $(mpirun --version | head -1), launcher ${GPT_LAUNCHER:-srun}: seconds to a saved" \
     "checkpoint: requeue $requeue_s, time-limit signal $usr1_s, scancel $cancel_s"
echo "PASS e2e_slurm"
