#!/bin/sh
# End to end: `monitor --plot` draws a real run's log.jsonl (40 steps, evals at
# 20 and 40) as well-formed SVG with one loss point per step record and one
# marker per eval; malformed lines are skipped and counted; a missing or empty
# log, or one with a line longer than 16 MB, is a one-line error with exit 1; a live run plotted from the status feed
# ends at the trainer's "done" event.  No SVG renderer needed.
set -e
NAME=e2e_plot
. tests/lib_e2e.sh
pid=""
plotter=""
on_exit 'kill -9 $pid $plotter 2>/dev/null'
prep_bytes "$tmp/data"

# sockets off for the log run: the default ports may belong to another run
cat > "$tmp/cfg.json" <<JSON
{"vocab_size": 256, "n_positions": 32, "n_embd": 32, "n_layer": 1, "n_head": 2,
 "batch_size": 4, "lr": 2e-3, "min_lr": 2e-4, "warmup_steps": 5, "max_steps": 40,
 "eval_every": 20, "eval_batches": 2, "log_every": 100,
 "data_dir": "$tmp/data", "out_dir": "$tmp/run",
 "status_endpoint": "none", "control_endpoint": "none", "metrics_endpoint": "none"}
JSON
"$BUILD/trainer" --config "$tmp/cfg.json" 2>"$tmp/stderr" || { tail -5 "$tmp/stderr"; fail "trainer exited non-zero"; }

# checks an SVG against a log: python3 check.py SVG LOG
cat > "$tmp/check.py" <<'PY'
import json, sys
import xml.etree.ElementTree as E
svg, log = sys.argv[1], sys.argv[2]
recs = []
for line in open(log):
    try:
        recs.append(json.loads(line))
    except ValueError:
        pass
steps = [r for r in recs if r.get("type") == "step"]
evals = [r for r in recs if r.get("type") == "eval"]
root = E.parse(svg).getroot()                       # well-formed XML
ns = "{http://www.w3.org/2000/svg}"
assert root.tag == ns + "svg", root.tag
byid = {e.get("id"): e for e in root.iter() if e.get("id")}
loss = byid["loss"].get("points").split()
assert len(loss) == len(steps), (len(loss), len(steps))
assert len(byid["loss_avg"].get("points").split()) == len(steps)
markers = byid["val_markers"].findall(ns + "circle")
assert len(markers) == len(evals) > 0, (len(markers), len(evals))
assert len(byid["val_loss"].get("points").split()) == len(evals)
text = " ".join("".join(t.itertext()) for t in root.iter(ns + "text"))
last = steps[-1]
assert "step %d/%d" % (last["step"], last["max_steps"]) in text, text      # title
assert "%.4f" % last["loss"] in text, text
for word in ("step", "loss", "train loss", "val loss", "moving average"):  # axis titles, legend
    assert word in text, word
assert len(list(byid["xticks"])) >= 3 and len(list(byid["yticks"])) >= 3
print(len(steps), len(evals))
PY

"$BUILD/monitor" --plot "$tmp/loss.svg" --log "$tmp/run/log.jsonl" > "$tmp/out" 2>"$tmp/err" ||
    fail "--plot failed: $(cat "$tmp/err")"
counts=$(python3 "$tmp/check.py" "$tmp/loss.svg" "$tmp/run/log.jsonl") || fail "SVG check"
[ "$counts" = "40 2" ] || fail "expected 40 step and 2 eval records, got $counts"
[ ! -s "$tmp/err" ] || fail "stderr on a clean log: $(cat "$tmp/err")"
ls "$tmp"/loss.svg.* >/dev/null 2>&1 && fail "temporary file left behind"

# log-scale y, and malformed lines skipped with a count on stderr
{ cat "$tmp/run/log.jsonl"; echo '{"type":"step","st'; echo 'not json'; } > "$tmp/bad.jsonl"
"$BUILD/monitor" --plot "$tmp/log.svg" --log "$tmp/bad.jsonl" --log-y > /dev/null 2>"$tmp/err" ||
    fail "--plot on a log with bad lines: $(cat "$tmp/err")"
grep -q "skipped 2 malformed lines" "$tmp/err" || fail "malformed count: $(cat "$tmp/err")"
python3 "$tmp/check.py" "$tmp/log.svg" "$tmp/run/log.jsonl" > /dev/null || fail "log-y SVG check"
grep -q "log scale" "$tmp/log.svg" || fail "log-y axis title"

# missing and empty logs: one line, exit 1, no file written
expect_error() {   # log file
    if "$BUILD/monitor" --plot "$tmp/none.svg" --log "$1" > /dev/null 2>"$tmp/err"; then fail "accepted log $1"; fi
    [ "$(wc -l < "$tmp/err")" -eq 1 ] || { cat "$tmp/err"; fail "error is not one line for $1"; }
    [ ! -e "$tmp/none.svg" ] || fail "an SVG was written for $1"
}
expect_error "$tmp/missing.jsonl"
: > "$tmp/empty.jsonl"
expect_error "$tmp/empty.jsonl"
# a line longer than any record (here a record behind 17 MB of blanks; a file
# of NULs, /dev/zero) is refused, not read whole into memory
{ head -c $((17 << 20)) /dev/zero | tr '\0' ' '; grep -m 1 '"type":"step"' "$tmp/run/log.jsonl"; } > "$tmp/long.jsonl"
expect_error "$tmp/long.jsonl"
grep -q "long.jsonl: line 1 is longer than 16 MB" "$tmp/err" || fail "long line: $(cat "$tmp/err")"

# the live feed: the plot is written at the trainer's "done" event, which a
# `stop` brings about.  PUB/SUB drops what comes before a subscriber joins, so
# the plotter starts before the trainer binds (it connects on its first retry
# after the bind), a --once subscriber shows records flow, and the evals
# counted are those logged after that
set -- $(free_ports 2)
status_ep=tcp://127.0.0.1:$1
control_ep=tcp://127.0.0.1:$2
"$BUILD/monitor" --plot "$tmp/live.svg" --connect "$status_ep" --timeout 120 > "$tmp/live.out" 2>&1 &
plotter=$!
"$BUILD/trainer" --config "$tmp/cfg.json" --set "status_endpoint=$status_ep" \
    --set "control_endpoint=$control_ep" --set max_steps=1000000 --set eval_every=50 \
    --set "out_dir=$tmp/run2" 2>"$tmp/stderr" &
pid=$!
"$BUILD/monitor" --connect "$status_ep" --once --timeout 60 > /dev/null || fail "no live records"
# two evals more on the way (up to 120 s on a loaded machine)
n0=$(count_records "$tmp/run2/log.jsonl" eval)
WATCH=$pid wait_for_record "$tmp/run2/log.jsonl" eval 120 $((n0 + 2))
"$BUILD/monitor" --control "$control_ep" stop --timeout 20 > /dev/null || fail "stop refused"
rc=0
wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || fail "live trainer exited $rc"
rc=0
wait "$plotter" || rc=$?
plotter=""
[ "$rc" -eq 0 ] || fail "live --plot exited $rc: $(cat "$tmp/live.out")"
python3 -c 'import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])' "$tmp/live.svg" || fail "live SVG not XML"
last=$(grep '"type":"step"' "$tmp/run2/log.jsonl" | tail -1 | python3 -c 'import json, sys; print(json.load(sys.stdin)["step"])')
grep -q "step $last/1000000" "$tmp/live.svg" || fail "live plot does not end at the last step ($last)"
grep -q 'id="val_markers"' "$tmp/live.svg" ||
    fail "live plot has no eval markers ($(count_records "$tmp/run2/log.jsonl" eval) evals logged; monitor: $(cat "$tmp/live.out"))"
echo "PASS e2e_plot ($counts step/eval records; live: $(cat "$tmp/live.out"))"
