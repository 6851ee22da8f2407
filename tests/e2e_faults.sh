#!/bin/sh
# End to end: faults from the file system and the user, each refused or
# survived with one line and the documented exit code (1: the run could not go
# on; 2: bad options), nothing already saved lost.
#  - out_dir on a tmpfs that holds one checkpoint, not two: the second save
#    fails with "No space left on device", exit 1, no crash in HDF5's exit
#    handler, no .tmp file left, the first checkpoint still resumes
#    (background and synchronous writes);
#  - a read-only out_dir: exit 1 with the OS reason;
#  - prep into a full tmpfs: the old dataset stays whole and usable;
#  - infer --save-quantized into a full tmpfs: "No space left on device", exit 1,
#    no .tmp file left;
#  - log.jsonl filling a tmpfs mid-run: one warning, the run goes on, the
#    record after the cut one on its own line;
#  - a loss that turns non-finite: stopped after 10 skipped steps, exit 4,
#    the checkpoints of the steps before still there and resumable;
#  - fewer non-finite steps than that: the run ends, its done line and record
#    give the NaN losses, not "val loss not evaluated";
#  - SIGHUP mid-run: saves a checkpoint of the step it stopped at, exits 0; a
#    second SIGHUP during that save kills it, the earlier checkpoint kept;
#  - a missing, corrupt or too-large tokenizer.json, a foreign val.tok, a
#    dataset without its manifest: refused before step 1 with one line.
# The tmpfs parts need root (mount); without it they print SKIP lines.
set -e
NAME=e2e_faults
. tests/lib_e2e.sh
pid=
mounts=
on_exit 'kill -9 $pid 2>/dev/null; for m in $mounts; do umount "$m" 2>/dev/null; done'

[ -f "$CORPUS/fortunes" ] || fail "corpus $CORPUS/fortunes not found (run make deps)"
"$BUILD/prep" --input "$CORPUS/fortunes" --out "$tmp/data" 2>/dev/null || fail "prep failed"
# 22k parameters: a checkpoint (parameters and Adam moments) is 0.29 MB
cat > "$tmp/cfg.json" <<JSON
{"vocab_size": 256, "n_positions": 32, "n_embd": 32, "n_layer": 1, "n_head": 2,
 "batch_size": 4, "lr": 2e-3, "max_steps": 4, "eval_every": 0, "log_every": 100,
 "status_endpoint": "none", "control_endpoint": "none", "metrics_endpoint": "none", "data_dir": "$tmp/data"}
JSON
# trainer expecting exit code $1, then its arguments; stderr in $tmp/err
expect_exit() {
    want=$1; shift
    set +e
    "$BUILD/trainer" --config "$tmp/cfg.json" "$@" >/dev/null 2>"$tmp/err"
    got=$?
    set -e
    [ "$got" -eq "$want" ] || { cat "$tmp/err"; fail "exit $got, not $want: $*"; }
}
# the one error line of the last run, which must contain $1
one_error_line() {
    n=$(grep -c '^trainer: ' "$tmp/err" || true)
    [ "$n" -eq 1 ] || { cat "$tmp/err"; fail "$n error lines, not 1 (wanted: $1)"; }
    grep '^trainer: ' "$tmp/err" | grep -qF "$1" || { cat "$tmp/err"; fail "no \"$1\" in the error"; }
    if grep -qiE 'segmentation|signal|backtrace|HDF5-DIAG' "$tmp/err"; then
        cat "$tmp/err"; fail "a crash or library trace after the error line"
    fi
}

# ---- refused before step 1 ---------------------------------------------------
refused_before_training() {   # dir, expected text
    out="$tmp/run-$(basename "$1")"
    expect_exit 1 --set data_dir="$1" --set out_dir="$out"
    one_error_line "$2"
    if grep -q '"type": *"step"' "$out/log.jsonl" 2>/dev/null || grep -q '^step ' "$tmp/err"; then
        fail "$1: a step ran before the refusal"
    fi
    ls "$out" 2>/dev/null | grep -q '\.h5' && fail "$1: a checkpoint was written"
    return 0
}
mk() { rm -rf "$tmp/$1"; cp -r "$tmp/data" "$tmp/$1"; }
mk notok; rm "$tmp/notok/tokenizer.json"
refused_before_training "$tmp/notok" "tokenizer.json: cannot open: No such file or directory"
mk badtok; printf '{"type": "bpe", "vocab_size": 300, "merges": [[1, ' > "$tmp/badtok/tokenizer.json"
refused_before_training "$tmp/badtok" "tokenizer.json: its size differs from manifest.json's"
"$BUILD/prep" --input "$CORPUS/fortunes" --out "$tmp/bigtok" --tokenizer bpe --vocab 300 2>/dev/null ||
    fail "prep bpe failed"
refused_before_training "$tmp/bigtok" "a vocabulary of 300 tokens does not fit the model's vocab_size 256"
"$BUILD/prep" --input "$CORPUS/debian" --out "$tmp/other" 2>/dev/null || fail "prep of another corpus failed"
mk foreign; cp "$tmp/other/val.tok" "$tmp/foreign/val.tok"
refused_before_training "$tmp/foreign" "val.tok: its size differs from manifest.json's"
mk nomanifest; rm "$tmp/nomanifest/manifest.json"
refused_before_training "$tmp/nomanifest" "manifest.json: cannot open"
echo "missing, corrupt and too-large tokenizers, a foreign val.tok and no manifest: refused before step 1"

# ---- a run that diverges --------------------------------------------------------
# 10 good steps saved every 5 (two kept), then resumed with an lr that makes
# the loss non-finite from step 12: the run stops after 10 skipped steps with
# one line, exit 4, and the good steps' checkpoints are still what --resume
# auto finds.  The saves due at the skipped steps 15 and 20 (whose state is the
# one that produced the non-finite gradients) wait for a step that updates,
# instead of pushing ckpt_000005 and ckpt_000010 out of keep_checkpoints.
div="--set out_dir=$tmp/diverge --set checkpoint_every=5 --set keep_checkpoints=2"
expect_exit 0 $div --set max_steps=10
expect_exit 4 $div --set max_steps=40 --set lr=1e30 --set warmup_steps=0 --resume auto
one_error_line "10 consecutive steps with non-finite loss or gradients"
saved=$(cd "$tmp/diverge" && echo ckpt_*.h5)
[ "$saved" = "ckpt_000005.h5 ckpt_000010.h5" ] ||
    fail "a diverged run left $saved, not the good steps' ckpt_000005.h5 ckpt_000010.h5"
[ "$(cat "$tmp/diverge/latest")" = ckpt_000010.h5 ] || fail "latest does not name ckpt_000010.h5"
expect_exit 0 $div --set max_steps=12 --resume auto
grep -q "resumed from $tmp/diverge/ckpt_000010.h5 at step 10" "$tmp/err" ||
    { cat "$tmp/err"; fail "no resume from the last good checkpoint"; }
echo "a run whose loss turns non-finite: one line, exit 4, the good checkpoints kept and resumable"
# fewer non-finite steps than stop a run: it ends, and its last line and done
# record say that the eval ran and gave NaN, not that none ran
expect_exit 0 --set out_dir="$tmp/nanval" --set max_steps=6 --set eval_every=6 --set lr=1e30 \
    --set warmup_steps=0
grep -q "^done: 6 steps, train loss -*nan, val loss -*nan," "$tmp/err" ||
    { cat "$tmp/err"; fail "a NaN val loss reported as not evaluated"; }
python3 - "$tmp/nanval/log.jsonl" <<'PY' || fail "done record of a run with a NaN loss"
import json, sys
done = [r for r in map(json.loads, open(sys.argv[1])) if r.get("message") == "done"]
assert len(done) == 1 and done[0]["loss"] is None and done[0]["val_loss"] is None, done
PY
echo "a run that ends with a NaN loss: the done line and record give it, not 'not evaluated'"

# ---- SIGHUP --------------------------------------------------------------------
"$BUILD/trainer" --config "$tmp/cfg.json" --set out_dir="$tmp/hup" --set max_steps=1000000 \
    >/dev/null 2>"$tmp/hup.err" &
pid=$!
# until a step is logged (the run is in its loop)
SHOW_ON_FAIL="$tmp/hup.err" WATCH=$pid wait_for_record "$tmp/hup/log.jsonl" step 60
kill -HUP "$pid"
set +e; wait "$pid"; rc=$?; set -e
pid=
[ "$rc" -eq 0 ] || { cat "$tmp/hup.err"; fail "SIGHUP: exit $rc, not 0 (as for SIGTERM)"; }
grep -q "stop requested" "$tmp/hup.err" || { cat "$tmp/hup.err"; fail "SIGHUP: no stop event"; }
ck=$(cat "$tmp/hup/latest")
[ -f "$tmp/hup/$ck" ] || fail "SIGHUP: latest names $ck, which is missing"
echo "SIGHUP: stopped after the step and saved $ck, exit 0"

# ---- a second SIGHUP during the stop's save ------------------------------------
# kills the run (the first resets the handler; not under Slurm, hence env -u).
# 12.8M parameters: a 153 MB checkpoint, written on a disk of 40 MB/s
# (tests/slow_disk.c) in 4 s, not the fraction of a second a poll on a loaded
# host could miss.  The run is frozen (SIGSTOP) while its ckpt_*.h5.tmp exists,
# so the second SIGHUP is pending when it goes on and lands in the save
# whatever the machine's speed.  What was saved before (by SIGUSR1) is not
# lost: latest still names it, --resume auto loads it, and that run's save
# removes the killed one's .tmp.
big="--set n_embd=512 --set n_layer=4 --set n_head=8"
slow_disk 40
env -u SLURM_JOB_ID $SLOW "$BUILD/trainer" --config "$tmp/cfg.json" $big --set out_dir="$tmp/hup2" \
    --set max_steps=1000000 >/dev/null 2>"$tmp/hup2.err" &
pid=$!
SHOW_ON_FAIL="$tmp/hup2.err" WATCH=$pid wait_for_record "$tmp/hup2/log.jsonl" step 60
kill -USR1 "$pid"
SHOW_ON_FAIL="$tmp/hup2.err" WATCH=$pid wait_for_record "$tmp/hup2/log.jsonl" checkpoint 60
saved=$(cat "$tmp/hup2/latest")
kill -HUP "$pid"
saving() { ls "$tmp/hup2" | grep -q '^ckpt_.*\.h5\.tmp$'; }
SHOW_ON_FAIL="$tmp/hup2.err" WATCH=$pid wait_until 60 "checkpoint write after SIGHUP" saving
kill -STOP "$pid"
saving || { kill -CONT "$pid"; fail "second SIGHUP: the save ended before the run was frozen"; }
kill -HUP "$pid"
kill -CONT "$pid"
set +e; wait "$pid" 2>/dev/null; rc=$?; set -e
pid=
[ "$rc" -eq 129 ] || { cat "$tmp/hup2.err"; fail "second SIGHUP during the save: exit $rc, not 129 (killed by SIGHUP)"; }
if grep -q '^done' "$tmp/hup2.err"; then cat "$tmp/hup2.err"; fail "second SIGHUP: the run finished"; fi
[ "$(cat "$tmp/hup2/latest")" = "$saved" ] && [ -f "$tmp/hup2/$saved" ] ||
    fail "second SIGHUP: latest no longer names the whole $saved"
killed_in=$(ls "$tmp/hup2" | grep '\.tmp$' || true)
step=$(echo "$saved" | sed 's/ckpt_0*\([0-9]*\)\.h5/\1/')
expect_exit 0 $big --set out_dir="$tmp/hup2" --resume auto --set max_steps=$((step + 1))
grep -q "resumed from $tmp/hup2/$saved at step $step" "$tmp/err" || { cat "$tmp/err"; fail "second SIGHUP: no resume from $saved"; }
if grep -q "skipped" "$tmp/err"; then cat "$tmp/err"; fail "second SIGHUP: the resume skipped a checkpoint"; fi
if ls "$tmp/hup2" | grep -q '\.tmp$'; then fail "second SIGHUP: a .tmp left after the next save: $(ls "$tmp/hup2")"; fi
echo "second SIGHUP during the save: killed by it (left ${killed_in:-no .tmp}); $saved resumed, nothing left after the next save"

# ---- tmpfs: disk full, read-only ------------------------------------------------
mount_tmpfs() {   # dir, size, options
    mkdir -p "$1"
    mount -t tmpfs -o "size=$2${3:+,$3}" tmpfs "$1" 2>/dev/null || return 1
    mounts="$1 $mounts"
}
tmpfs_parts="disk full, read-only out_dir, prep, infer --save-quantized and log.jsonl into a full disk"
if [ "$(id -u)" -ne 0 ]; then
    skip_part "$tmpfs_parts" "need root to mount a tmpfs"
    exit 0
fi
if ! mount_tmpfs "$tmp/full" 300k; then
    skip_part "$tmpfs_parts" "mount -t tmpfs is not permitted here"
    exit 0
fi
for async in 1 0; do
    out="$tmp/full/a$async"
    expect_exit 1 --set out_dir="$out" --set checkpoint_every=2 --set checkpoint_async=$async
    one_error_line "No space left on device"
    [ "$(cat "$out/latest")" = "ckpt_000002.h5" ] || fail "async=$async: latest is not ckpt_000002.h5"
    ls "$out" | grep -q '\.tmp' && fail "async=$async: a .tmp file was left: $(ls "$out")"
    expect_exit 0 --set out_dir="$tmp/resumed$async" --resume "$out/ckpt_000002.h5" --set max_steps=3
    grep -q "resumed from $out/ckpt_000002.h5 at step 2" "$tmp/err" || { cat "$tmp/err"; fail "no resume"; }
    rm -rf "$out"   # room for the next round
done
echo "disk full during a save: one line, exit 1, no crash, no .tmp left, the earlier checkpoint resumes"

mount_tmpfs "$tmp/ro" 1m || fail "second tmpfs"
mkdir "$tmp/ro/run"
mount -o remount,ro "$tmp/ro" || fail "remount read-only"
expect_exit 1 --set out_dir="$tmp/ro/run"
one_error_line "Read-only file system"
expect_exit 1 --set out_dir="$tmp/ro/new"
one_error_line "Read-only file system"
echo "read-only out_dir: one line with the OS reason, exit 1"

# prep replacing a dataset on a disk too small for the new one: the old stays
mount_tmpfs "$tmp/small" 160k || fail "third tmpfs"
"$BUILD/prep" --input "$CORPUS/debian" --out "$tmp/small/data" 2>/dev/null || fail "prep of a small corpus failed"
before=$(cat "$tmp/small/data/manifest.json")
set +e; "$BUILD/prep" --input "$CORPUS" --out "$tmp/small/data" 2>"$tmp/err"; rc=$?; set -e
[ "$rc" -eq 1 ] || { cat "$tmp/err"; fail "prep into a full disk: exit $rc, not 1"; }
grep -q "No space left on device" "$tmp/err" || { cat "$tmp/err"; fail "prep: no OS reason"; }
[ "$(cat "$tmp/small/data/manifest.json")" = "$before" ] || fail "prep: the old dataset was touched"
[ "$(ls "$tmp/small")" = "data" ] || fail "prep left a temporary directory: $(ls "$tmp/small")"
expect_exit 0 --set data_dir="$tmp/small/data" --set out_dir="$tmp/onsmall" --set max_steps=1
echo "prep into a full disk: one line, exit 1, the old dataset whole and usable"

# infer --save-quantized onto a disk full before or during the write: the OS reason, no .tmp left
mount_tmpfs "$tmp/q8" 100k || fail "fourth tmpfs"
ck="$tmp/resumed0/$(cat "$tmp/resumed0/latest")"
for room in 0 24; do
    dd if=/dev/zero of="$tmp/q8/fill" bs=1k count=$((100 - room)) 2>/dev/null || true
    set +e; "$BUILD/infer" --ckpt "$ck" --save-quantized "$tmp/q8/m.h5" 2>"$tmp/err"; rc=$?; set -e
    [ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] || { cat "$tmp/err"; fail "save onto a full disk: exit $rc"; }
    grep -q "No space left on device" "$tmp/err" || { cat "$tmp/err"; fail "save onto a full disk: no OS reason"; }
    [ "$(ls "$tmp/q8")" = "fill" ] || fail "save onto a full disk left $(ls "$tmp/q8")"
    rm "$tmp/q8/fill"
done
echo "infer --save-quantized onto a full disk: one line with the OS reason, exit 1, nothing left"

# log.jsonl filling the disk mid-run: one warning, training goes on (the
# records are lost), and once there is room again the next record starts on
# a new line after the one the full disk cut
mount_tmpfs "$tmp/logfull" 1m || fail "fifth tmpfs"
log=$tmp/logfull/run/log.jsonl
"$BUILD/trainer" --config "$tmp/cfg.json" --set out_dir="$tmp/logfull/run" --set max_steps=1000000 \
    --set log_every=1 >/dev/null 2>"$tmp/logfull.err" &
pid=$!
SHOW_ON_FAIL="$tmp/logfull.err"
WATCH=$pid wait_for_record "$log" step 60
dd if=/dev/zero of="$tmp/logfull/fill" bs=4k 2>/dev/null || true   # until the disk is full
WATCH=$pid wait_for_text "$tmp/logfull.err" \
    "warning: $log: write failed (No space left on device): status records are being lost" 60
steps_shown() { [ "$(grep -c '^step ' "$tmp/logfull.err")" -ge "$1" ]; }
WATCH=$pid wait_until 60 "steps while log.jsonl cannot be written" \
    steps_shown $(($(grep -c '^step ' "$tmp/logfull.err") + 2))
rm "$tmp/logfull/fill"
WATCH=$pid wait_for_record "$log" step 60 $(($(count_records "$log" step) + 1))
kill -TERM "$pid"
set +e; wait "$pid"; rc=$?; set -e
pid=
SHOW_ON_FAIL=
[ "$rc" -eq 0 ] || { cat "$tmp/logfull.err"; fail "log.jsonl on a full disk: exit $rc, not 0"; }
n=$(grep -c "status records are being lost" "$tmp/logfull.err" || true)
[ "$n" -eq 1 ] || fail "log.jsonl on a full disk: $n warnings, not 1"
python3 - "$log" <<'PY' || fail "log.jsonl on a full disk: records"
import json, sys
lines = open(sys.argv[1]).read().split("\n")
assert lines[-1] == "", "the last record has no newline"
recs, cut = [], []
for i, l in enumerate(lines[:-1]):
    try:
        recs.append(json.loads(l))
    except ValueError:
        cut.append((i, l))
assert len(cut) <= 1, ("more than one damaged line", cut)
for i, l in cut:   # a record's beginning, alone on its line, records after it
    assert l.startswith('{"type":') and l.count('{"type":') == 1, ("the next record runs on", l[l.find('{"type":', 1) - 60:][:120])
    assert i < len(lines) - 2, "the cut record is the last line"
steps = [r["step"] for r in recs if r["type"] == "step"]
assert any(b > a + 1 for a, b in zip(steps, steps[1:])), "no step record was lost"
assert steps == sorted(steps) and recs[-1]["message"] == "done", recs[-1]
if cut:
    print("log.jsonl on a full disk: one warning, steps %d..%d trained unrecorded, the record after the cut on its own line"
          % next((a + 1, b - 1) for a, b in zip(steps, steps[1:]) if b > a + 1))
else:
    print("SKIP e2e_faults log cut: the disk filled exactly at a record's end, no record was cut")
PY
echo "e2e_faults: PASS"
