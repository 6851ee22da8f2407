#!/bin/sh
# End to end: HDF5 checkpoints and --resume.
#  - 12 steps straight vs 6 steps + checkpoint + --resume auto to 12: the losses
#    of steps 7..12 are bit-identical and so are the final /model and /optimizer;
#  - resuming on another rank count (1 -> 2, 2 -> 4, 2 -> 1), with and without
#    ZeRO stage 1, continues within fp32 rounding; ZeRO's sync (one tensor at a
#    time) and async (gather into the snapshot) saves write the same file;
#  - --resume at max_steps: "done: nothing left to train", exit 0, no loss;
#  - --resume with another seq_len: a warning that the samples change;
#  - a damaged newest checkpoint makes --resume auto fall back to the one before,
#    with a warning; other model dimensions are refused naming the key;
#  - SIGUSR1 writes a checkpoint and training goes on; SIGTERM finishes the step,
#    writes a checkpoint at that step and exits 0;
#  - the same two signals while MPI is still starting: saved after step 1;
#  - checkpoint_async=1 (the default; the straight run above uses 0, so the two
#    write paths give the same file): steps go on while a 39 MB checkpoint is
#    written; a failed background write stops the run with a one-line error;
#  - fp16: resumed before the loss scale doubles, the run doubles it at the
#    same step as a straight run and its steps stay bit-identical.
set -e
NAME=e2e_checkpoint
. tests/lib_e2e.sh
pid=
on_exit 'kill -9 $pid 2>/dev/null'

command -v h5diff >/dev/null || fail "h5diff not found (run make deps: hdf5-tools)"
prep_bytes "$tmp/data"

# lr_decay_steps is fixed so that a 6-step run has the 12-step run's schedule;
# the runs compared share one precision (auto could measure differently per
# rank count): bf16 where the CPU multiplies it natively, else fp32
prec=fp32
grep -q -E 'avx512_bf16|amx_bf16' /proc/cpuinfo && prec=bf16
cat > "$tmp/cfg.json" <<JSON
{"vocab_size": 256, "n_positions": 64, "n_embd": 64, "n_layer": 2, "n_head": 4, "precision": "$prec",
 "batch_size": 8, "lr": 2e-3, "min_lr": 2e-4, "warmup_steps": 3, "max_steps": 12,
 "lr_decay_steps": 12, "eval_every": 0, "log_every": 100,
 "status_endpoint": "none", "control_endpoint": "none", "metrics_endpoint": "none", "data_dir": "$tmp/data"}
JSON
train() {   # out_dir, more trainer args...
    out=$1; shift
    "$BUILD/trainer" --config "$tmp/cfg.json" --set out_dir="$out" "$@" 2>"$tmp/stderr" ||
        { cat "$tmp/stderr"; fail "trainer exited non-zero: $*"; }
}

train "$tmp/a" --set checkpoint_async=0   # the synchronous path; b saves in the background
train "$tmp/b" --set max_steps=6 --set checkpoint_every=6
[ "$(cat "$tmp/b/latest")" = "ckpt_000006.h5" ] || fail "latest does not name ckpt_000006.h5"
train "$tmp/b" --resume auto
grep -q "resumed from $tmp/b/ckpt_000006.h5 at step 6" "$tmp/stderr" || { cat "$tmp/stderr"; fail "no resume event"; }
# the resumed run's start events carry the step it starts at, as a log reader orders them
[ "$(grep '"message":"training ' "$tmp/b/log.jsonl" | tail -1 | sed 's/.*"step":\([0-9]*\).*/\1/')" = 6 ] ||
    { grep '"training ' "$tmp/b/log.jsonl"; fail "the resumed run's training event is not at step 6"; }

python3 - "$tmp/a/log.jsonl" "$tmp/b/log.jsonl" <<'PY' || fail "losses of the resumed run differ"
import json, sys
def losses(path):
    return {r["step"]: r["loss"] for r in map(json.loads, open(path)) if r["type"] == "step"}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert sorted(a) == list(range(1, 13)) and sorted(b) == list(range(1, 13)), (sorted(a), sorted(b))
bad = [(s, a[s], b[s]) for s in range(1, 13) if a[s] != b[s]]   # exact float equality
assert not bad, bad
ck = [r for r in map(json.loads, open(sys.argv[2])) if r["type"] == "checkpoint"]
assert [r["step"] for r in ck] == [6, 12], ck
assert all(r["write_s"] >= 0 and r["blocked_s"] >= 0 and r["path"].endswith(".h5") for r in ck)
print("steps 7..12 bit-identical after resume, last loss %r" % a[12])
PY
for g in /model /optimizer/m /optimizer/v; do
    h5diff "$tmp/a/ckpt_000012.h5" "$tmp/b/ckpt_000012.h5" "$g" "$g" >/dev/null ||
        fail "$g differs between the straight and the resumed run"
done
ls "$tmp/b" | grep -q '\.tmp$' && fail "a .tmp file was left behind"

# --resume from a checkpoint already at max_steps: nothing to train, one line,
# exit 0, and a done record without a loss (no step ran)
cp -r "$tmp/a" "$tmp/done"
train "$tmp/done" --resume auto
grep -q "^done: nothing left to train: at step 12 of max_steps 12$" "$tmp/stderr" ||
    { cat "$tmp/stderr"; fail "resume at max_steps: no 'nothing left to train' line"; }
python3 - "$tmp/a/log.jsonl" "$tmp/done/log.jsonl" <<'PY' || fail "resume at max_steps: log records"
import json, sys
before = sum(1 for _ in open(sys.argv[1]))
recs = [json.loads(l) for l in open(sys.argv[2])][before:]
assert not [r for r in recs if r["type"] == "step"], "a step ran"
done = [r for r in recs if r["type"] == "event" and r.get("message") == "done"]
assert len(done) == 1 and done[0]["step"] == 12 and "loss" not in done[0], done
PY

# resumed with another seq_len: the samples and their order change, which the
# run says as it does for another seed; the same seq_len says nothing
train "$tmp/seq" --set max_steps=2 --set checkpoint_every=1
cp -r "$tmp/seq" "$tmp/seq-same"
train "$tmp/seq" --set max_steps=3 --set seq_len=32 --resume auto
grep -q "warning: the checkpoint was trained with seq_len 64, the config has 32" "$tmp/stderr" ||
    { cat "$tmp/stderr"; fail "resumed with another seq_len: no warning"; }
train "$tmp/seq-same" --set max_steps=3 --resume auto
! grep -q "warning" "$tmp/stderr" || { cat "$tmp/stderr"; fail "resumed with the same seq_len: a warning"; }

# the rank count and ZeRO: np 1's step-6 checkpoint continues on np 2 (batch 4,
# the same global batch), with and without zero_stage 1, within fp32 rounding
# of the straight run; np 2 zero_stage 1 saves the same file whether the shards
# go to the snapshot (async) or one tensor at a time (sync), and its step-6
# file continues on np 4 (4 shards: tensors cut across ranks) and on np 1
need_mpirun
mpi() {   # np, out_dir, more trainer args...
    np=$1; out=$2; shift 2
    $MPIRUN -np "$np" "$BUILD/trainer" --config "$tmp/cfg.json" --set out_dir="$out" --set batch_size=$((8 / np)) "$@" \
        >/dev/null 2>"$tmp/stderr" || { cat "$tmp/stderr"; fail "np $np run failed: $*"; }
}
mpi 2 "$tmp/r12" --resume "$tmp/b/ckpt_000006.h5"
mpi 2 "$tmp/r12z" --set zero_stage=1 --resume "$tmp/b/ckpt_000006.h5"
mpi 2 "$tmp/z2a" --set zero_stage=1 --set checkpoint_every=6
mpi 2 "$tmp/z2s" --set zero_stage=1 --set checkpoint_every=6 --set checkpoint_async=0
for s in 000006 000012; do
    for g in /model /optimizer/m /optimizer/v /train; do
        h5diff "$tmp/z2a/ckpt_$s.h5" "$tmp/z2s/ckpt_$s.h5" "$g" "$g" >/dev/null ||
            fail "np 2 zero_stage 1: $g of step $s differs between the async and the sync save"
    done
done
mpi 4 "$tmp/z4" --set zero_stage=1 --resume "$tmp/z2s/ckpt_000006.h5"
train "$tmp/z1" --resume "$tmp/z2s/ckpt_000006.h5"
python3 - "$tmp/a/log.jsonl" "$tmp/r12" "$tmp/r12z" "$tmp/z2a" "$tmp/z4" "$tmp/z1" <<'PY' || fail "resumed runs on other rank counts differ"
import json, sys
def losses(path):
    return {r["step"]: r["loss"] for r in map(json.loads, open(path)) if r["type"] == "step"}
a = losses(sys.argv[1])
for d in sys.argv[2:]:
    b = losses(d + "/log.jsonl")
    first = 1 if d.endswith("z2a") else 7
    assert sorted(b) == list(range(first, 13)), (d, sorted(b))
    worst = max(abs(a[s] - b[s]) / a[s] for s in b)
    assert worst < 1e-5, (d, worst)
    print("%s: steps %d..12 within %.2g relative of the straight np 1 run" % (d.split("/")[-1], first, worst))
PY

# ZeRO, when rank 0 fails halfway: a resume that skips a file damaged in the
# middle of its moments (after every rank has taken some tensors of it) hands
# all of the older file out again and continues bit-exactly; a synchronous
# save that cannot write ends every rank with the error, none left waiting
cp -r "$tmp/z2s" "$tmp/zf"
v0=/optimizer/v/transformer.h.0.ln_1.weight
off=$(h5dump -p -H -d "$v0" "$tmp/zf/ckpt_000012.h5" | sed -n 's/^ *OFFSET \([0-9]*\)$/\1/p')
[ -n "$off" ] || fail "h5dump gave no data offset for $v0"
python3 - "$tmp/zf/ckpt_000012.h5" "$off" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2]) + 4)
    b = f.read(1)
    f.seek(int(sys.argv[2]) + 4)
    f.write(bytes([b[0] ^ 0x10]))
PY
mpi 2 "$tmp/zf" --set zero_stage=1 --set checkpoint_async=0 --set comm_timeout_s=30 --resume auto
grep -q "warning: resume auto skipped: .*ckpt_000012.h5: $v0 is damaged (checksum mismatch)" "$tmp/stderr" ||
    { cat "$tmp/stderr"; fail "zero_stage 1: no fallback past the damaged moments"; }
grep -q "resumed from $tmp/zf/ckpt_000006.h5 at step 6" "$tmp/stderr" || { cat "$tmp/stderr"; fail "zero_stage 1: did not fall back to step 6"; }
python3 - "$tmp/z2s/log.jsonl" "$tmp/zf/log.jsonl" <<'PY' || fail "zero_stage 1: the run resumed after a fallback differs"
import json, sys
steps = lambda p: [(r["step"], r["loss"]) for r in map(json.loads, open(p)) if r["type"] == "step"]
a, b = steps(sys.argv[1]), steps(sys.argv[2])
assert b[-6:] == a[-6:] and [s for s, _ in b[-6:]] == list(range(7, 13)), (a[-6:], b[-6:])
print("zero_stage 1: fell back past damaged moments, steps 7..12 bit-identical")
PY
mkdir -p "$tmp/zbad/ckpt_000006.h5.tmp"
if $MPIRUN -np 2 "$BUILD/trainer" --config "$tmp/cfg.json" --set out_dir="$tmp/zbad" --set batch_size=4 \
    --set zero_stage=1 --set checkpoint_async=0 --set checkpoint_every=6 --set comm_timeout_s=30 \
    >/dev/null 2>"$tmp/err"; then fail "zero_stage 1: a failed save did not stop the run"; fi
grep -q "trainer: rank 0: .*ckpt_000006.h5.tmp" "$tmp/err" || { cat "$tmp/err"; fail "zero_stage 1: no error line for the failed save"; }
if grep -q "stuck or unreachable" "$tmp/err"; then cat "$tmp/err"; fail "zero_stage 1: a rank was left waiting"; fi

# a damaged newest checkpoint: fall back to the previous one, with a warning
head -c 100000 "$tmp/b/ckpt_000012.h5" > "$tmp/half" && mv "$tmp/half" "$tmp/b/ckpt_000012.h5"
train "$tmp/b" --resume auto --set max_steps=13
grep -q "warning: resume auto skipped: .*ckpt_000012.h5" "$tmp/stderr" || { cat "$tmp/stderr"; fail "no fallback warning"; }
grep -q "resumed from $tmp/b/ckpt_000006.h5 at step 6" "$tmp/stderr" || { cat "$tmp/stderr"; fail "did not fall back to step 6"; }

# refusals: one line naming the problem, non-zero exit
expect_refused() {   # expected-substring, trainer args...
    want=$1; shift
    if "$BUILD/trainer" --config "$tmp/cfg.json" "$@" 2>"$tmp/err"; then fail "accepted: $*"; fi
    [ "$(wc -l < "$tmp/err")" -eq 1 ] || { cat "$tmp/err"; fail "error is not one line: $*"; }
    grep -q "$want" "$tmp/err" || { cat "$tmp/err"; fail "error does not mention '$want'"; }
}
expect_refused "n_embd is 64 in the checkpoint but 32 in the config" \
    --set out_dir="$tmp/b" --resume auto --set n_embd=32
expect_refused "truncated or damaged" --set out_dir="$tmp/c" --resume "$tmp/b/ckpt_000012.h5"
expect_refused "No such file" --set out_dir="$tmp/c" --resume "$tmp/nothing.h5"
train "$tmp/fresh" --resume auto --set max_steps=1
grep -q "no checkpoint in $tmp/fresh, starting fresh" "$tmp/stderr" || fail "no fresh-start event"
# a fresh run (no --resume) into a directory with another run's checkpoints
before=$(ls -l "$tmp/b")
expect_refused "already holds checkpoints of a run (newest: step 13): continue it with --resume auto" \
    --set out_dir="$tmp/b"
[ "$(ls -l "$tmp/b")" = "$before" ] || fail "a refused fresh run changed the checkpoints"

# SIGUSR1: a checkpoint, training goes on; SIGTERM: finish the step, save, exit 0
"$BUILD/trainer" --config "$tmp/cfg.json" --set out_dir="$tmp/s" --set max_steps=1000000 \
    2>"$tmp/s.err" &
pid=$!
wait_for_record "$tmp/s/log.jsonl" step 60 3
kill -USR1 "$pid"
wait_for_record "$tmp/s/log.jsonl" checkpoint 60
n=$(count_records "$tmp/s/log.jsonl" step)
wait_for_record "$tmp/s/log.jsonl" step 60 $((n + 2))   # still training
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
pid=
[ "$rc" -eq 0 ] || { cat "$tmp/s.err"; fail "SIGTERM: exit code $rc, not 0"; }
python3 - "$tmp/s/log.jsonl" "$tmp/s" <<'PY' || fail "SIGTERM checkpoint check"
import json, os, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
last = max(r["step"] for r in recs if r["type"] == "step")
ck = [r for r in recs if r["type"] == "checkpoint"]
assert len(ck) == 2 and ck[0]["step"] < last and ck[-1]["step"] == last, (ck, last)
name = "ckpt_%06d.h5" % last
assert open(os.path.join(sys.argv[2], "latest")).read().strip() == name
print("SIGUSR1 saved at step %d, SIGTERM at step %d" % (ck[0]["step"], last))
PY
last=$(cat "$tmp/s/latest")
step=$(echo "$last" | sed 's/ckpt_0*\([0-9]*\)\.h5/\1/')
train "$tmp/s" --resume auto --set max_steps=$((step + 1))
grep -q "resumed from $tmp/s/$last at step $step" "$tmp/stderr" || { cat "$tmp/stderr"; fail "SIGTERM checkpoint does not resume"; }

# a signal while MPI is still starting: the handlers are in place before
# comm_init, so SIGUSR1 saves after the first step and the run goes on, and
# SIGTERM saves and exits 0 (their default actions would kill the process).
# The signal goes as soon as /proc shows the handler, not after a fixed sleep,
# which on a loaded host could fall before main.  The first step ends about
# 0.3 s after the start: the run is frozen (SIGSTOP) while the log is checked
# for it and the signal sent, and a try whose poll saw the handler only after
# that step is made again.
signal_at_start() {   # signal, out_dir
    tries=0
    while :; do
        rm -rf "$2"
        "$BUILD/trainer" --config "$tmp/cfg.json" --set out_dir="$2" --set max_steps=1000000 \
            2>"$2.err" &
        pid=$!
        SHOW_ON_FAIL="$2.err" WATCH=$pid POLL_S=0.01 wait_for_handler "$pid" "$1" 20
        kill -STOP "$pid"
        [ -e "$2/log.jsonl" ] && [ "$(count_records "$2/log.jsonl" step)" -gt 0 ] || break
        kill -9 "$pid"
        wait "$pid" 2>/dev/null || :
        tries=$((tries + 1))
        [ "$tries" -lt 5 ] || fail "$1 at start: $tries tries saw the handler only after a step"
        echo "$1 at start: a step ended before the signal could go: again"
    done
    kill "-$1" "$pid"
    kill -CONT "$pid"
}
signal_at_start USR1 "$tmp/early"
SHOW_ON_FAIL="$tmp/early.err" wait_for_record "$tmp/early/log.jsonl" checkpoint 60
n=$(count_records "$tmp/early/log.jsonl" step)
SHOW_ON_FAIL="$tmp/early.err" wait_for_record "$tmp/early/log.jsonl" step 60 $((n + 2))
[ "$(cat "$tmp/early/latest")" = ckpt_000001.h5 ] || fail "SIGUSR1 at start: latest is not step 1"
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
[ "$rc" -eq 0 ] || { cat "$tmp/early.err"; fail "SIGUSR1 at start, then SIGTERM: exit $rc"; }
signal_at_start TERM "$tmp/early_term"
rc=0; wait "$pid" || rc=$?
pid=
[ "$rc" -eq 0 ] || { cat "$tmp/early_term.err"; fail "SIGTERM at start: exit $rc, not 0"; }
[ "$(cat "$tmp/early_term/latest")" = ckpt_000001.h5 ] || fail "SIGTERM at start: latest is not step 1"
echo "signals at start: SIGUSR1 saved step 1 and training went on; SIGTERM saved step 1, exit 0"

# async save of a larger model (3.2M parameters, a 39 MB file): step records
# come while the file is written (no timing is asserted)
train "$tmp/big" --set n_embd=256 --set checkpoint_every=3
python3 - "$tmp/big/log.jsonl" <<'PY' || fail "async checkpoint records"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
ck = [r for r in recs if r["type"] == "checkpoint"]
assert [r["step"] for r in ck] == [3, 6, 9, 12], ck
for r in ck[:-1]:   # the last one is collected by the final wait
    assert r["blocked_s"] >= 0 and r["write_s"] > 0, r
    i = recs.index(r)   # its record comes after the steps trained meanwhile
    assert any(q["type"] == "step" and q["step"] > r["step"] for q in recs[:i]), r
print("async: blocked %s s vs write %s s" % (["%.3f" % r["blocked_s"] for r in ck],
                                             ["%.3f" % r["write_s"] for r in ck]))
PY
[ "$(cat "$tmp/big/latest")" = "ckpt_000012.h5" ] || fail "async: latest is not ckpt_000012.h5"
# a background write that fails (its .tmp name is taken by a directory) stops the run
mkdir -p "$tmp/bad/ckpt_000003.h5.tmp"
if "$BUILD/trainer" --config "$tmp/cfg.json" --set out_dir="$tmp/bad" --set checkpoint_every=3 \
    2>"$tmp/err"; then fail "a failed background write did not stop the run"; fi
grep -q "trainer: rank 0: checkpoint of step 3 failed: .*ckpt_000003.h5.tmp" "$tmp/err" ||
    { cat "$tmp/err"; fail "no error line for the failed background write"; }
[ "$(grep -c '"type":"error"' "$tmp/bad/log.jsonl")" -eq 1 ] || fail "async failure: not one error record"
# fp16: the loss scaler's count towards its next doubling (2000 finite steps)
# is in the checkpoint, so a run resumed at step 1500 doubles its scale at
# step 2000 as the straight run does, and every step after the resume is the
# same; without the count the resumed run kept the old scale
fp16="--set precision=fp16 --set n_positions=32 --set n_embd=32 --set n_layer=1 --set n_head=2
      --set batch_size=2 --set max_steps=2100 --set lr_decay_steps=2100 --set log_every=100000"
train "$tmp/fp16-straight" $fp16
train "$tmp/fp16-resumed" $fp16 --set max_steps=1500
train "$tmp/fp16-resumed" $fp16 --resume auto
python3 - "$tmp/fp16-straight/log.jsonl" "$tmp/fp16-resumed/log.jsonl" <<'PY' || fail "fp16 resume"
import json, sys
def steps(p):
    return {r["step"]: r for r in map(json.loads, open(p)) if r["type"] == "step"}
a, b = steps(sys.argv[1]), steps(sys.argv[2])
assert a[1500]["loss_scale"] != a[2100]["loss_scale"], "the scale did not change after step 1500"
bad = [s for s in range(1501, 2101)
       if (a[s]["loss"], a[s]["loss_scale"]) != (b[s]["loss"], b[s]["loss_scale"])]
assert not bad, "step %d: straight loss %r scale %r, resumed %r %r" % (
    bad[0], a[bad[0]]["loss"], a[bad[0]]["loss_scale"], b[bad[0]]["loss"], b[bad[0]]["loss_scale"])
print("fp16: resumed at 1500, steps 1501..2100 bit-identical, the scale doubled at the same step")
PY
echo "PASS e2e_checkpoint"
