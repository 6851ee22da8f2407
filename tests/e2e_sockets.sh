#!/bin/sh
# End to end: hostile clients and faults at every socket.
#  - floods from a few local clients (tests/zflood) against a running trainer's
#    status socket (80,000 distinct subscriptions; 1 MB subscriptions), its
#    control socket (garbage requests never read back; 1 MB messages), a
#    build/loader (1 MB and garbage requests) and infer --serve (2 MB and
#    many queued requests): the RSS of the process flooded is printed before
#    and after and grows by less than MAX_GROWTH_MB, training goes on, and
#    every socket still answers afterwards;
#  - build/loader killed (-9) and restarted mid-run: the run finishes all its
#    steps with the losses of an uninterrupted run on the same loader, bit for
#    bit (the samples' order depends only on the seed);
#  - a loader that does not come back: the run saves the steps done, then
#    exits non-zero naming the loader;
#  - --serve: a bad endpoint exits 2; a non-loopback one needs $GPT_SERVE_TOKEN
#    (exit 2 without), and then every request needs the token.
set -e
NAME=e2e_sockets
. tests/lib_e2e.sh
ZFLOOD=${ZFLOOD:-$BUILD/tests/zflood}
MAX_GROWTH_MB=${MAX_GROWTH_MB:-20}
lpid=
tpid=
spid=
on_exit 'kill -9 $lpid $tpid $spid 2>/dev/null'
[ -x "$ZFLOOD" ] || fail "$ZFLOOD not built"
[ -x "$BUILD/tests/serve_client" ] || fail "$BUILD/tests/serve_client not built"
prep_bytes "$tmp/data"

set -- $(free_ports 3)
status_ep=tcp://127.0.0.1:$1
control_ep=tcp://127.0.0.1:$2
serve_port=$3
LEP="ipc://$tmp/loader.sock"
cat > "$tmp/cfg.json" <<JSON
{"vocab_size": 256, "n_positions": 32, "n_embd": 64, "n_layer": 2, "n_head": 4,
 "batch_size": 8, "lr": 2e-3, "min_lr": 2e-4, "warmup_steps": 3, "max_steps": 60,
 "lr_decay_steps": 60, "precision": "fp32", "eval_every": 0, "log_every": 100000, "seed": 1337,
 "status_endpoint": "none", "control_endpoint": "none", "metrics_endpoint": "none", "data_dir": "$tmp/data",
 "loader_endpoint": "$LEP", "loader_depth": 4, "loader_timeout_s": 20}
JSON

rss_mb() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
steps() { count_records "$1" step; }
# log, at least n steps, pid that must stay alive; looks often, as the runs
# of 60 steps are stopped mid-run
wait_steps() { WATCH=$3 POLL_S=0.02 wait_for_record "$1" step 60 "$2"; }
# flood NAME PID LOG ENDPOINT subs|msgs CLIENTS N SIZE: RSS of PID before and
# after (printed), bounded growth, PID alive; LOG (or -): its steps go on
flood() {
    name=$1 pid=$2 flog=$3; shift 3
    before=$(rss_mb "$pid")
    [ "$flog" = - ] || s0=$(steps "$flog")
    sent=$("$ZFLOOD" "$@") || fail "zflood $*"
    sleep 1   # the RSS is read once what the flood left queued is processed or dropped
    kill -0 "$pid" 2>/dev/null || fail "$name: the process died"
    after=$(rss_mb "$pid")
    echo "flood $name ($3 clients x $4 x $5 B, ${sent#zflood: }): RSS $before -> $after MB"
    python3 -c "import sys; sys.exit(not ($after - $before < $MAX_GROWTH_MB))" ||
        fail "$name: RSS grew from $before to $after MB"
    if [ "$flog" != - ]; then
        s1=$(steps "$flog")
        [ "$s1" -gt "$s0" ] || fail "$name: training stopped during the flood (step $s0)"
    fi
}
ctl() { "$BUILD/monitor" --control "$control_ep" "$@" --json --timeout 20; }

# ---- floods against a running trainer and its loader ----------------------------------
start_loader
"$BUILD/trainer" --config "$tmp/cfg.json" --set out_dir="$tmp/flood" --set max_steps=10000000 \
    --set lr_decay_steps=10000000 --set status_endpoint="$status_ep" \
    --set control_endpoint="$control_ep" --set checkpoint_every=0 2>"$tmp/flood.err" &
tpid=$!
log="$tmp/flood/log.jsonl"
wait_steps "$log" 50 "$tpid"
flood "status: distinct subscriptions" "$tpid" "$log" subs "$status_ep" 4 20000 31
flood "status: distinct subscriptions again" "$tpid" "$log" subs "$status_ep" 4 20000 31
flood "status: 1 MB messages" "$tpid" "$log" subs "$status_ep" 4 20 1048576
"$BUILD/monitor" --connect "$status_ep" --once --json --timeout 20 > /dev/null ||
    fail "no status record after the floods"
flood "control: garbage requests never read" "$tpid" "$log" msgs "$control_ep" 4 2000 60000
flood "control: 1 MB messages" "$tpid" "$log" msgs "$control_ep" 4 20 1048576
ctl status > "$tmp/r" || fail "control status after the floods: $(cat "$tmp/r")"
flood "loader: 1 MB requests" "$lpid" - msgs "$LEP" 4 20 1048576
flood "loader: garbage requests never read" "$lpid" - msgs "$LEP" 4 5000 200
s0=$(steps "$log")
wait_steps "$log" $((s0 + 20)) "$tpid"   # the loader still serves the trainer
ctl stop > "$tmp/r" || fail "stop: $(cat "$tmp/r")"
rc=0
wait "$tpid" || rc=$?
tpid=
[ "$rc" -eq 0 ] || { tail -3 "$tmp/flood.err"; fail "trainer exited $rc after the floods"; }

# ---- build/loader restarted mid-run ----------------------------------------------------
# stopped_mid_run NAME [TRAINER ARGS...]: a trainer on $tmp/NAME (stderr in
# $tmp/NAME.err, pid in $tpid) stopped (SIGSTOP) after step 10 while it still
# needs batches its loader has not been asked for.  With S steps logged it may
# hold those of steps up to S + 1 + loader_depth (the one it trains, 4 asked
# for ahead), so from S = 55 on it could end all 60 steps without its loader:
# a loader that does not come back would not be noticed (exit 0), nor one that
# does.  Steps take a millisecond, and on a busy host the poll can see step 10
# that late: such a try is made again.
stopped_mid_run() {
    name=$1
    shift
    tries=0
    while :; do
        rm -rf "${tmp:?}/$name"
        "$BUILD/trainer" --config "$tmp/cfg.json" --set out_dir="$tmp/$name" "$@" 2>"$tmp/$name.err" &
        tpid=$!
        wait_steps "$tmp/$name/log.jsonl" 10 "$tpid"
        kill -STOP "$tpid" 2>/dev/null || :   # (it may have ended)
        stopped_at=$(steps "$tmp/$name/log.jsonl")
        [ "$stopped_at" -ge 55 ] || return 0
        tries=$((tries + 1))
        kill -9 "$tpid" 2>/dev/null || :
        wait "$tpid" 2>/dev/null || :
        tpid=
        [ "$tries" -lt 5 ] || fail "$name: $tries tries stopped the trainer too late (at step $stopped_at of 60)"
        echo "$name: stopped at step $stopped_at, too late for its loader to matter: again"
    done
}
"$BUILD/trainer" --config "$tmp/cfg.json" --set out_dir="$tmp/ref" 2>"$tmp/ref.err" ||
    { cat "$tmp/ref.err"; fail "reference run"; }
# stopped while the loader is killed, so that requests are in flight and the
# kill lands mid-run however fast the steps are
stopped_mid_run restart
kill -9 "$lpid"
wait "$lpid" 2>/dev/null || true
killed_at=$(steps "$tmp/restart/log.jsonl")
kill -CONT "$tpid"
sleep 1   # what is tested: the trainer waits a while for batches that do not come
start_loader
rc=0
wait "$tpid" || rc=$?
tpid=
[ "$rc" -eq 0 ] || { tail -3 "$tmp/restart.err"; fail "the run exited $rc after its loader restarted"; }
python3 - "$tmp/ref/log.jsonl" "$tmp/restart/log.jsonl" "$killed_at" <<'PY' || fail "restarted run differs"
import json, sys
steps = lambda p: {r["step"]: r["loss"] for r in map(json.loads, open(p)) if r["type"] == "step"}
ref, got = steps(sys.argv[1]), steps(sys.argv[2])
assert sorted(got) == list(range(1, 61)), sorted(got)
diff = [(s, ref[s], got[s]) for s in got if ref[s] != got[s]]
assert not diff, diff
print("loader killed after step %s and restarted: 60 of 60 steps, losses equal the "
      "uninterrupted run's bit for bit" % sys.argv[3])
PY

# ---- a loader that does not come back: the steps done are saved first ------------------
stopped_mid_run gone --set loader_timeout_s=2 --set checkpoint_every=0
kill -9 "$lpid"
wait "$lpid" 2>/dev/null || true
lpid=
kill -CONT "$tpid"
rc=0
wait "$tpid" || rc=$?
tpid=
done_steps=$(steps "$tmp/gone/log.jsonl")   # with the batches it had already received
[ "$rc" -ne 0 ] || fail "trainer exited 0 without its loader"
grep -q "loader at $LEP did not answer within 2 s" "$tmp/gone.err" || { cat "$tmp/gone.err"; fail "no message naming the loader"; }
want=$(printf 'ckpt_%06d.h5' "$done_steps")
[ "$(cat "$tmp/gone/latest" 2>/dev/null)" = "$want" ] ||
    fail "latest is '$(cat "$tmp/gone/latest" 2>/dev/null)', not $want (steps done: $done_steps)"
echo "loader gone after step $done_steps: $want saved, then exit $rc"

# ---- infer --serve -----------------------------------------------------------------------
ck="$tmp/restart/$(cat "$tmp/restart/latest")"
expect_usage() {   # expected-substring, endpoint: exit 2 with one line, before loading
    rc=0
    "$BUILD/infer" --ckpt "$ck" --serve "$2" 2>"$tmp/err" || rc=$?
    [ "$rc" -eq 2 ] && [ "$(wc -l < "$tmp/err")" -eq 1 ] && grep -q "$1" "$tmp/err" ||
        { cat "$tmp/err"; fail "--serve $2 exited $rc"; }
}
expect_usage "expected tcp://HOST:PORT" "udp://x"
expect_usage "expected tcp://HOST:PORT" "tcp://127.0.0.1:0"
GPT_SERVE_TOKEN= expect_usage "needs a token" "tcp://0.0.0.0:$serve_port"
start_serve() {   # endpoint
    "$BUILD/infer" --ckpt "$ck" --serve "$1" 2>"$tmp/serve.err" &
    spid=$!
    SHOW_ON_FAIL="$tmp/serve.err" WATCH=$spid wait_for_text "$tmp/serve.err" "serving on" 60
}
sep=tcp://127.0.0.1:$serve_port
start_serve "$sep"
flood "serve: 2 MB requests" "$spid" - msgs "$sep" 4 20 2097152
flood "serve: garbage requests never read" "$spid" - msgs "$sep" 4 300 900000
# requests that take a while (a generation each): the queue fills and the senders block
flood "serve: queued generations never read" "$spid" - msgs "$sep" 4 300 900000 \
    '{"prompt": "A", "max_tokens": 100000, "temperature": 0}'
"$BUILD/tests/serve_client" "$sep" '{"prompt":"A","max_tokens":4,"seed":1}' > "$tmp/r" &&
    grep -q '"ok":true' "$tmp/r" || fail "serve after the floods: $(cat "$tmp/r")"
kill -TERM "$spid"
wait "$spid" || fail "server did not exit 0 on SIGTERM"
spid=
GPT_SERVE_TOKEN=tk start_serve "tcp://0.0.0.0:$serve_port"
"$BUILD/tests/serve_client" "$sep" '{"prompt":"A","max_tokens":2}' '{"prompt":"A","max_tokens":2,"token":"no"}' \
    '{"prompt":"A","max_tokens":2,"token":"tk"}' > "$tmp/r" || fail "token requests"
sed -n 1p "$tmp/r" | grep -q '"error":"missing token"' || fail "no token: $(sed -n 1p "$tmp/r")"
sed -n 2p "$tmp/r" | grep -q '"error":"wrong token"' || fail "wrong token: $(sed -n 2p "$tmp/r")"
sed -n 3p "$tmp/r" | grep -q '"ok":true' || fail "right token: $(sed -n 3p "$tmp/r")"
kill -TERM "$spid"
wait "$spid" || fail "server did not exit 0 on SIGTERM"
spid=
echo "PASS e2e_sockets"
