#!/bin/sh
# End to end: the separate loader process (build/loader, loader_endpoint).
#  - build/loader answers --help and refuses bad arguments with one line;
#  - 20 steps fed by build/loader over ipc:// have the step losses of the
#    in-process loader thread, bit for bit (fp32, same config);
#  - a trainer whose seed differs from the loader's is refused, naming both,
#    and so is one whose data has the loader's size and other tokens; a
#    loader refuses a data directory of mixed preparations;
#  - kill -9 of the loader mid-run: the trainer exits non-zero naming the
#    loader, its timeout and the batch it waited for, leaving only whole
#    checkpoints;
#    a new loader on the same endpoint + --resume auto finishes the run with
#    the losses of the uninterrupted one.
set -e
NAME=e2e_loader
. tests/lib_e2e.sh
lpid=
tpid=
apid=
on_exit 'kill -9 $lpid $tpid $apid 2>/dev/null'
TIMEOUT_S=3
prep_bytes "$tmp/data"
cat > "$tmp/cfg.json" <<JSON
{"vocab_size": 256, "n_positions": 32, "n_embd": 192, "n_layer": 4, "n_head": 4,
 "batch_size": 8, "lr": 2e-3, "min_lr": 2e-4, "warmup_steps": 3, "max_steps": 20,
 "lr_decay_steps": 20, "precision": "fp32", "eval_every": 0, "log_every": 100, "seed": 1337,
 "status_endpoint": "none", "control_endpoint": "none", "metrics_endpoint": "none", "data_dir": "$tmp/data"}
JSON
EP="ipc://$tmp/loader.sock"
REMOTE="--set loader_endpoint=$EP --set loader_timeout_s=$TIMEOUT_S"

# the command line: --help, and one-line refusals
"$BUILD/loader" --help | grep -q "usage: loader" || fail "--help"
expect_usage() {   # expected-substring, loader args...
    want=$1; shift
    if "$BUILD/loader" "$@" 2>"$tmp/err"; then fail "loader accepted: $*"; fi
    [ "$(wc -l < "$tmp/err")" -eq 1 ] && grep -q "$want" "$tmp/err" || { cat "$tmp/err"; fail "refusal of: $*"; }
}
expect_usage "required" --data "$tmp/data"
expect_usage "\"32x\" is not a whole number in 1..1048576" --data "$tmp/data" --endpoint "$EP" --seq-len 32x
expect_usage "expected tcp://HOST:PORT" --data "$tmp/data" --endpoint "udp://x"
GPT_LOADER_TOKEN= expect_usage "needs a token" --data "$tmp/data" --endpoint "tcp://0.0.0.0:5999"
expect_usage "cannot open" --data "$tmp/nothing" --endpoint "$EP"

train() {   # out_dir, more trainer args...
    out=$1; shift
    "$BUILD/trainer" --config "$tmp/cfg.json" --set out_dir="$out" "$@" 2>"$tmp/stderr" ||
        { cat "$tmp/stderr"; fail "trainer exited non-zero: $*"; }
}
same_losses() {   # reference log, other log: every step of the other equals the reference's
    python3 - "$1" "$2" <<'PY'
import json, sys
steps = lambda p: {r["step"]: r["loss"] for r in map(json.loads, open(p)) if r["type"] == "step"}
ref, got = steps(sys.argv[1]), steps(sys.argv[2])
assert got and all(ref[s] == got[s] for s in got), [(s, ref.get(s), got[s]) for s in got if ref.get(s) != got[s]]
print("steps %d..%d equal the in-process run's bit for bit" % (min(got), max(got)))
PY
}

train "$tmp/ref"
start_loader
train "$tmp/remote" $REMOTE
same_losses "$tmp/ref/log.jsonl" "$tmp/remote/log.jsonl" || fail "remote losses differ"
[ "$(grep -c '"type":"step"' "$tmp/remote/log.jsonl")" -eq 20 ] || fail "remote run did not do 20 steps"

# another seed orders the samples differently: refused at once, both named
if "$BUILD/trainer" --config "$tmp/cfg.json" --set out_dir="$tmp/seed" --set seed=7 $REMOTE 2>"$tmp/err"; then
    fail "a trainer with another seed was served"
fi
grep -q "loader at $EP: the trainer's seed is 7, this loader serves 1337" "$tmp/err" || { cat "$tmp/err"; fail "seed mismatch message"; }

# data of the same size and other content (the corpus with its letters
# rotated): refused by the train split's checksum, which requests carry
corpus_text() { if [ -d "$CORPUS" ]; then find "$CORPUS" -type f | sort | xargs cat; else cat "$CORPUS"; fi; }
corpus_text 2>/dev/null | head -c 200000 > "$tmp/a.txt"
tr 'a-zA-Z' 'n-za-mN-ZA-M' < "$tmp/a.txt" > "$tmp/b.txt"
for x in a b; do "$BUILD/prep" --input "$tmp/$x.txt" --out "$tmp/data_$x" --tokenizer byte 2>/dev/null || fail "prep $x"; done
# the loader checks its directory as a trainer does: files of mixed preparations are refused
cp -r "$tmp/data_a" "$tmp/data_mixed" && cp "$tmp/data_b/val.tok" "$tmp/data_mixed/val.tok"
expect_usage "val.tok: its checksum differs from manifest.json's" --data "$tmp/data_mixed" --endpoint "$EP"
# a --seq-len the train split is too short for names the option, with a bad option's exit 2
head -c 3000 "$tmp/a.txt" > "$tmp/short.txt"
"$BUILD/prep" --input "$tmp/short.txt" --out "$tmp/data_short" --tokenizer byte 2>/dev/null ||
    fail "prep short"
if timeout 30 "$BUILD/loader" --data "$tmp/data_short" --endpoint "$EP" --seq-len 4096 2>"$tmp/err"
then fail "loader accepted a window longer than its data"; else rc=$?; fi
[ "$rc" -eq 2 ] && [ "$(wc -l < "$tmp/err")" -eq 1 ] &&
    grep -q "too few for windows of 4096+1 tokens (lower --seq-len, or give more data)" "$tmp/err" ||
    { cat "$tmp/err"; fail "refusal of a --seq-len longer than the data (exit $rc)"; }
"$BUILD/loader" --data "$tmp/data_a" --endpoint "ipc://$tmp/loader_a.sock" --seq-len 32 --vocab 256 \
    --seed 1337 2>"$tmp/loader_a.err" &
apid=$!
SHOW_ON_FAIL="$tmp/loader_a.err" WATCH=$apid wait_for_file "$tmp/loader_a.sock" 30
if "$BUILD/trainer" --config "$tmp/cfg.json" --set out_dir="$tmp/other" --set data_dir="$tmp/data_b" \
    --set loader_endpoint="ipc://$tmp/loader_a.sock" --set loader_timeout_s=$TIMEOUT_S 2>"$tmp/err"; then
    fail "a trainer with other data of the same size was served"
fi
kill "$apid"
grep -q "different data of the same size" "$tmp/err" || { cat "$tmp/err"; fail "same-size data mismatch message"; }

# kill -9 the loader mid-run.  The trainer is stopped while the loader is
# killed, a few steps after step 6.  The stop must find it with batches still
# to come: with S steps logged it may hold the batches of steps up to
# S + 1 + loader_depth (the one it trains, 2 asked for ahead), so from S = 17
# on it could finish all 20 steps without its loader and exit 0.  Steps take
# milliseconds, and on a busy host the poll can see step 6 that late: such a
# try is dropped and made again (the stopped trainer's log says where it is).
tries=0
while :; do
    rm -rf "$tmp/kill"
    "$BUILD/trainer" --config "$tmp/cfg.json" --set out_dir="$tmp/kill" --set checkpoint_every=5 \
        --set loader_depth=2 $REMOTE 2>"$tmp/kill.err" &
    tpid=$!
    # ckpt_000005.h5 is written before step 6 is logged; looks often, as the
    # run would otherwise be far past it when stopped
    SHOW_ON_FAIL="$tmp/kill.err" WATCH=$tpid POLL_S=0.02 wait_for_record "$tmp/kill/log.jsonl" step 60 6
    kill -STOP "$tpid" 2>/dev/null || :
    stopped_at=$(count_records "$tmp/kill/log.jsonl" step)
    [ "$stopped_at" -gt 16 ] || break
    tries=$((tries + 1))
    kill -9 "$tpid" 2>/dev/null || :   # it may have finished
    wait "$tpid" 2>/dev/null || true
    tpid=
    [ "$tries" -lt 5 ] || fail "$tries tries stopped the trainer too late (at step $stopped_at of 20)"
    echo "stopped at step $stopped_at, too late to kill its loader mid-run: again"
done
kill -9 "$lpid"
wait "$lpid" 2>/dev/null || true
lpid=
t0=$(date +%s%N)
kill -CONT "$tpid"
# (60 s only bounds a hang: the timeout is asserted by the message below)
SHOW_ON_FAIL="$tmp/kill.err" wait_for_exit "$tpid" 60
rc=0
wait "$tpid" || rc=$?
tpid=
elapsed_ms=$((($(date +%s%N) - t0) / 1000000))
[ "$rc" -ne 0 ] || fail "trainer exited 0 after its loader was killed"
# it gave up on the batch of the step after the last one it trained, and
# says so in one line naming the loader and its timeout (loader_timeout_s)
done_steps=$(count_records "$tmp/kill/log.jsonl" step)
grep -q "^trainer: rank 0: loader at $EP did not answer within $TIMEOUT_S s (batch of step $((done_steps + 1)))$" \
    "$tmp/kill.err" || { cat "$tmp/kill.err"; fail "no error naming the loader, its timeout and the batch of step $((done_steps + 1))"; }
ls "$tmp/kill" | grep -q '\.tmp$' && fail "a .tmp file was left behind"
last=$(cat "$tmp/kill/latest")
echo "loader killed at step $(count_records "$tmp/kill/log.jsonl" step): trainer exited $rc after $elapsed_ms ms, latest $last"

# a new loader on the same endpoint, and the trainer resumes
start_loader
train "$tmp/kill" $REMOTE --resume auto
grep -q "resumed from $tmp/kill/$last" "$tmp/stderr" || { cat "$tmp/stderr"; fail "did not resume from $last"; }
python3 - "$tmp/kill/log.jsonl" "$last" "$tmp/resumed.jsonl" <<'PY' || fail "the resumed run did not reach step 20"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"type":"step"' in l]
start = int(sys.argv[2][5:11])
# the resumed run's records are the last 20 - start steps of the log
out = recs[-(20 - start):]
assert [r["step"] for r in out] == list(range(start + 1, 21)), [r["step"] for r in out]
open(sys.argv[3], "w").writelines(json.dumps(r) + "\n" for r in out)
PY
same_losses "$tmp/ref/log.jsonl" "$tmp/resumed.jsonl" || fail "resumed losses differ"

kill -TERM "$lpid"
wait "$lpid" || fail "loader did not exit 0 on SIGTERM"
lpid=
grep -q "loader: stopped after" "$tmp/loader.err" || { cat "$tmp/loader.err"; fail "no stop line"; }
echo "PASS e2e_loader"
