#!/bin/sh
# End to end: a trainer publishes status records and answers control requests.
# `monitor --once --json` gets a record with every field docs/design.md requires;
# `status` replies ok; garbage, unknown and oversized requests get error
# replies (or are dropped) while the run goes on; `pause` stops the step count
# until `resume`, and a checkpoint asked for meanwhile is written at once; a
# second run on the same out_dir is refused; `stop` ends the run with exit code 0; non-loopback endpoints
# without an explicit opt-in are refused; a publisher of messages that are not
# records does not satisfy or hold off `monitor --once`; monitor's usage errors
# name what is wrong.  Ports are random, every wait bounded.
set -e
NAME=e2e_status
. tests/lib_e2e.sh
pid=""
on_exit 'kill -9 $pid 2>/dev/null'
SHOW_ON_FAIL="$tmp/stderr"
prep_bytes "$tmp/data"

set -- $(free_ports 2)
status_ep=tcp://127.0.0.1:$1
control_ep=tcp://127.0.0.1:$2
ctl_port=$2

cat > "$tmp/cfg.json" <<JSON
{"vocab_size": 256, "n_positions": 64, "n_embd": 64, "n_layer": 2, "n_head": 4,
 "batch_size": 4, "lr": 2e-3, "min_lr": 2e-4, "warmup_steps": 10, "max_steps": 200000,
 "eval_every": 500, "eval_batches": 2, "log_every": 100000,
 "data_dir": "$tmp/data", "out_dir": "$tmp/run",
 "status_endpoint": "$status_ep", "control_endpoint": "$control_ep", "metrics_endpoint": "none"}
JSON

# refused before anything starts: network endpoints without the explicit opt-in
expect_refused() {   # expected-substring, --set assignment
    if "$BUILD/trainer" --config "$tmp/cfg.json" --set "$2" 2>"$tmp/err"; then fail "accepted: $2"; fi
    [ "$(wc -l < "$tmp/err")" -eq 1 ] || { cat "$tmp/err"; fail "error is not one line: $2"; }
    grep -q "$1" "$tmp/err" || { cat "$tmp/err"; fail "error for $2 does not mention '$1'"; }
}
expect_refused control_token control_endpoint=tcp://0.0.0.0:$ctl_port
expect_refused status_public status_endpoint=tcp://0.0.0.0:$ctl_port
# monitor's usage errors: the command given where the endpoint belongs (EP has
# no default) is named as such, and `none` is no endpoint to reach a run at
mon_refused() {   # expected-substring, monitor arguments
    want=$1; shift
    if "$BUILD/monitor" "$@" 2>"$tmp/err"; then fail "monitor accepted: $*"; else rc=$?; fi
    [ "$rc" -eq 2 ] && [ "$(wc -l < "$tmp/err")" -eq 1 ] && grep -q -F -- "$want" "$tmp/err" ||
        { cat "$tmp/err"; fail "monitor $* (exit $rc) does not say '$want'"; }
}
mon_refused "--control takes the run's control endpoint, then the command" --control stop
mon_refused "--connect none: give the run's endpoint" --connect none --once

"$BUILD/trainer" --config "$tmp/cfg.json" 2>"$tmp/stderr" &
pid=$!

ctl() {   # command [args]: the reply JSON on stdout, the exit code as the monitor's
    "$BUILD/monitor" --control "$control_ep" "$@" --json --timeout 20
}
field() {   # python expression on the reply r, reading stdin
    python3 -c "import json, sys; r = json.load(sys.stdin); print($1)"
}

# one record from the live feed, with every field of docs/design.md's status messages
"$BUILD/monitor" --connect "$status_ep" --once --json --timeout 60 > "$tmp/once" ||
    fail "monitor --once got nothing"
python3 - "$tmp/once" <<'PY' || fail "status record check"
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[0])
assert r["type"] in ("step", "eval", "checkpoint", "event", "error"), r
if r["type"] == "step":
    need = ["type", "step", "max_steps", "loss", "lr", "tokens_per_s", "mfu", "grad_norm",
            "elapsed_s", "eta_s", "ranks", "loader_wait_ms", "comm_ms", "rss_mb", "time",
            "status_dropped"]
    missing = [k for k in need if k not in r]
    assert not missing, missing
PY
# a step record for sure: the status reply carries the latest
ctl status > "$tmp/status" || fail "status request failed: $(cat "$tmp/status")"
python3 - "$tmp/status" <<'PY' || fail "status reply check"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["ok"] is True and r["state"] == "running", r
s = r["latest"]
need = ["type", "step", "max_steps", "loss", "lr", "tokens_per_s", "mfu", "grad_norm",
        "elapsed_s", "eta_s", "ranks", "loader_wait_ms", "comm_ms", "rss_mb", "time", "status_dropped"]
missing = [k for k in need if k not in s]
assert s["type"] == "step" and not missing, missing
PY
"$BUILD/monitor" --connect "$status_ep" --once --timeout 60 > "$tmp/view" || fail "progress view"
grep -q "^step [0-9]*/200000 \[" "$tmp/view" || { cat "$tmp/view"; fail "progress line"; }

# garbage: raw bytes on the control port (not even ZMTP), then bad requests
python3 tests/send_garbage.py "$ctl_port" || fail "raw TCP write"
if ctl reboot > "$tmp/r"; then fail "unknown command accepted"; fi
[ "$(field 'r["ok"]' < "$tmp/r")" = False ] && grep -q "unknown command" "$tmp/r" || fail "unknown command reply: $(cat "$tmp/r")"
big=$(python3 -c 'print("x" * 70000)')
if ctl "$big" > "$tmp/r"; then fail "oversized request accepted"; fi
grep -q "too large" "$tmp/r" || fail "oversized request reply: $(head -c 200 "$tmp/r")"
kill -0 "$pid" 2>/dev/null || fail "trainer died after bad requests"
ctl status > "$tmp/r" || fail "status after bad requests: $(cat "$tmp/r")"

# a second run on the same out_dir (a requeued job beside this one) is refused
if "$BUILD/trainer" --config "$tmp/cfg.json" --set status_endpoint=none --set control_endpoint=none \
    --resume auto 2>"$tmp/err2"; then fail "a second run on the same out_dir was accepted"; fi
grep -q "$tmp/run is in use by process $pid" "$tmp/err2" || { cat "$tmp/err2"; fail "second run's refusal"; }

# pause: the step count stays put until resume
ctl pause > "$tmp/r" || fail "pause: $(cat "$tmp/r")"
# the loop pauses at its next step boundary and says so in the log
wait_for_record "$tmp/run/log.jsonl" event/paused 60
s1=$(ctl status | field 'r["latest"]["step"]')
state=$(ctl status | field 'r["state"]')
sleep 1.5   # what is tested: no step in this time while paused
s2=$(ctl status | field 'r["latest"]["step"]')
[ "$state" = paused ] || fail "state while paused: $state"
[ "$s1" = "$s2" ] || fail "steps advanced while paused: $s1 -> $s2"
# a checkpoint asked for during the pause is written during it, of the paused step
n0=$(count_records "$tmp/run/log.jsonl" checkpoint)
ctl checkpoint > "$tmp/r" || fail "checkpoint while paused: $(cat "$tmp/r")"
grep -q "checkpoint now" "$tmp/r" || fail "checkpoint reply while paused: $(cat "$tmp/r")"
wait_for_record "$tmp/run/log.jsonl" checkpoint 60 $((n0 + 1))
[ -f "$tmp/run/ckpt_$(printf %06d "$s1").h5" ] || fail "no checkpoint of paused step $s1"
s2=$(ctl status | field 'r["latest"]["step"]')
[ "$s1" = "$s2" ] || fail "steps advanced while paused for a checkpoint: $s1 -> $s2"
ctl resume > "$tmp/r" || fail "resume: $(cat "$tmp/r")"
advanced() { s3=$(ctl status | field 'r["latest"]["step"]'); [ "$s3" -gt "$s2" ]; }
poll 60 advanced || fail "steps did not advance after resume ($s2 -> $s3)"

# stop: the run ends by itself with exit code 0
ctl stop > "$tmp/r" || fail "stop: $(cat "$tmp/r")"
wait_for_exit "$pid" 60
rc=0
wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || fail "trainer exited with $rc after stop"
grep -q '"message":"stop requested' "$tmp/run/log.jsonl" || fail "no stop event in log.jsonl"

# nothing is listening any more: --once says so in one line and exits 1
if "$BUILD/monitor" --connect "$status_ep" --once --timeout 1 > /dev/null 2>"$tmp/err"; then
    fail "monitor --once succeeded with no trainer"
fi
[ "$(wc -l < "$tmp/err")" -eq 1 ] || fail "monitor timeout message is not one line"
# a status port taken by another process: the run goes on without the socket,
# and the control server's status reply still carries the latest step.  The
# trainer starts once the holder listens (it says so with a file).
python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); open(sys.argv[2], "w").close(); time.sleep(120)' \
    "${status_ep##*:}" "$tmp/held" &
holder=$!
on_exit 'kill $holder 2>/dev/null'
WATCH=$holder wait_for_file "$tmp/held" 30
"$BUILD/trainer" --config "$tmp/cfg.json" --set out_dir="$tmp/taken" 2>"$tmp/stderr" &
pid=$!
WATCH=$pid wait_for_record "$tmp/taken/log.jsonl" step 60
grep -q "running without the status socket" "$tmp/stderr" || fail "no event for the taken port"
ctl status > "$tmp/r" || fail "status with the status port taken: $(cat "$tmp/r")"
[ "$(field 'r["latest"]["type"]' < "$tmp/r")" = step ] ||
    fail "status reply without the latest step when the status port is taken: $(cat "$tmp/r")"
ctl stop > /dev/null || fail "stop with the status port taken"
wait_for_exit "$pid" 60
pid=""
kill $holder 2>/dev/null || :

# interrupted SAYING ARGS...: the monitor run with ARGS, Ctrl-C'd once it
# handles SIGINT (before, SIGINT's default action would end it), exits 1 and
# says SAYING, not that its wait ran out
interrupted() {
    saying=$1
    shift
    "$BUILD/monitor" "$@" >"$tmp/out" 2>"$tmp/err" &
    mpid=$!
    WATCH=$mpid wait_for_handler "$mpid" INT 30
    kill -INT $mpid
    rc=0
    wait $mpid || rc=$?
    [ "$rc" -eq 1 ] && grep -q "$saying" "$tmp/err" || fail "monitor $*: exit $rc, $(cat "$tmp/err")"
}
# while waiting for a control reply
interrupted "interrupted before a reply" --control "$control_ep" status --timeout 30
# and while --once waits for a record (nobody publishes here), as it exits 1
# when its wait runs out, not 0 with nothing shown
set -- $(free_ports 1)
interrupted "interrupted before a status record" --once --connect "tcp://127.0.0.1:$1" --timeout 30

# a publisher of messages that are not records (not JSON, or JSON but not an
# object): --once prints none of them, and they do not hold its --timeout off
ZFLOOD=${ZFLOOD:-$BUILD/tests/zflood}
[ -x "$ZFLOOD" ] || fail "$ZFLOOD not built"
set -- $(free_ports 1)
"$ZFLOOD" pub "tcp://127.0.0.1:$1" 60 'not json' '[1]' 42 > /dev/null &
zpid=$!
on_exit 'kill $zpid 2>/dev/null'
rc=0
timeout 30 "$BUILD/monitor" --connect "tcp://127.0.0.1:$1" --once --timeout 2 > "$tmp/out" 2>"$tmp/err" || rc=$?
[ "$rc" -eq 1 ] && [ ! -s "$tmp/out" ] && grep -q "no status record" "$tmp/err" ||
    fail "monitor --once on messages that are not records: exit $rc, printed '$(cat "$tmp/out")'"
kill $zpid
# nor do a record's control characters reach the terminal from --json: C0
# and C1 (U+009B is CSI) come out as JSON escapes
set -- $(free_ports 1)
"$ZFLOOD" pub "tcp://127.0.0.1:$1" 60 '{"type":"event","message":"a\u001b[2Jb\u009b2Jc"}' > /dev/null &
zpid=$!
"$BUILD/monitor" --connect "tcp://127.0.0.1:$1" --once --json --timeout 20 > "$tmp/out" ||
    fail "monitor --once --json got no record"
kill $zpid
python3 - "$tmp/out" <<'PY' || fail "control characters printed raw by --json: $(od -c "$tmp/out" | head -3)"
import json, sys
raw = open(sys.argv[1], "rb").read()
assert not any(b < 0x20 and b != 0x0a or b == 0x7f for b in raw), raw
assert b"\xc2\x9b" not in raw and b"\\u009b" in raw, raw
assert json.loads(raw)["message"] == "a\x1b[2Jb\x9b2Jc", raw
PY

echo "PASS e2e_status (paused at step $s1, resumed to $s3)"
