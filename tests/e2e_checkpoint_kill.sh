#!/bin/sh
# End to end: SIGKILL at random moments while checkpoints are being
# written never costs the newest complete checkpoint.  A small model saves
# after every step (checkpoint_every=1, so most of the time goes to writing:
# the kills land in HDF5 writes, fsyncs, renames and pointer updates), in turn
# from the loop and from the background writer.  After each kill, --resume auto
# must load the checkpoint `latest` names without skipping anything, every
# tensor checksum verified, and train on from it; the unfinished checkpoint a
# kill left is removed at the start, and named.  KILL_TRIALS (default 20).
set -e
NAME=e2e_checkpoint_kill
. tests/lib_e2e.sh
TRIALS=${KILL_TRIALS:-20}
stale=
pid=
on_exit 'kill -9 $pid 2>/dev/null'
prep_bytes "$tmp/data"
# 0.43M parameters: a 5 MB file, written in tens of ms; a step of 2 x 32 tokens takes ~1 ms
cat > "$tmp/cfg.json" <<JSON
{"vocab_size": 256, "n_positions": 64, "n_embd": 128, "n_layer": 2, "n_head": 4,
 "batch_size": 2, "seq_len": 32, "lr": 1e-3, "warmup_steps": 2, "max_steps": 1000000, "lr_decay_steps": 100000,
 "eval_every": 0, "log_every": 1000, "checkpoint_every": 1, "keep_checkpoints": 2,
 "status_endpoint": "none", "control_endpoint": "none", "metrics_endpoint": "none", "data_dir": "$tmp/data",
 "out_dir": "$tmp/run"}
JSON
lines() { cat "$tmp/run/log.jsonl" 2>/dev/null | wc -l; }
# a random delay of 0..0.127 s: the kill lands at a random moment of the writes
pause() { sleep "$(od -An -N1 -tu1 /dev/urandom | awk '{printf "%.3f", $1 / 2000}')"; }

training_since() { [ "$(lines)" -gt $(($1 + 2)) ] && [ -f "$tmp/run/latest" ]; }
# Each launch but the first resumes from the kill before it: its stderr must
# say it resumed from the file `latest` named, with nothing skipped (every
# tensor and its checksum read).  The last launch trains one step and exits.
mid_write=0
removed=0
latest=
i=0
while [ $i -le "$TRIALS" ]; do
    if [ $i -eq "$TRIALS" ]; then
        "$BUILD/trainer" --config "$tmp/cfg.json" --set max_steps=$((step + 1)) --resume auto \
            2>"$tmp/train.err" || { cat "$tmp/train.err"; fail "--resume auto failed after the last kill"; }
    else
        n=$(lines)
        "$BUILD/trainer" --config "$tmp/cfg.json" --set checkpoint_async=$((i % 2)) --resume auto \
            2>"$tmp/train.err" &
        pid=$!
        # until it trains (a record after the start-up events) and a checkpoint exists
        SHOW_ON_FAIL="$tmp/train.err" WATCH=$pid POLL_S=0.01 \
            wait_until 30 "progress in trial $i" training_since "$n"
    fi
    if [ -n "$latest" ]; then
        grep -q "resumed from $tmp/run/$latest at step $step" "$tmp/train.err" ||
            { cat "$tmp/train.err"; fail "launch $i did not resume from $latest"; }
        if grep -q "skipped" "$tmp/train.err"; then cat "$tmp/train.err"; fail "launch $i skipped a checkpoint"; fi
        for f in $stale; do   # the unfinished checkpoint goes at start, not at the first save
            grep -q "^event: removed .*$tmp/run/$f.*: left by an interrupted save$" "$tmp/train.err" ||
                { cat "$tmp/train.err"; fail "launch $i did not remove $f"; }
            removed=$((removed + 1))
        done
    fi
    [ $i -lt "$TRIALS" ] || break
    pause
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
    ls "$tmp/run" | grep -q '\.tmp$' && mid_write=$((mid_write + 1))
    stale=$(ls "$tmp/run" | grep '^ckpt_.*\.tmp$' || true)
    latest=$(cat "$tmp/run/latest" 2>/dev/null) || fail "trial $i: no latest pointer after the kill"
    step=$(echo "$latest" | sed 's/ckpt_0*\([0-9]*\)\.h5/\1/')
    [ -f "$tmp/run/$latest" ] || fail "trial $i: latest names $latest, which does not exist"
    i=$((i + 1))
done
echo "$TRIALS SIGKILLs ($mid_write with a write in progress, $removed unfinished checkpoints removed): the newest complete checkpoint always loaded"
echo "PASS e2e_checkpoint_kill"
