#!/bin/sh
# End to end: build/infer --serve on a checkpoint the trainer wrote.
#  - four clients at once, two requests each, while garbage arrives (raw TCP bytes that are
#    not ZeroMQ, a request that is not JSON, one with a NUL byte or a \u0000 escape (cJSON
#    would cut the prompt there), out-of-range values, an unknown field, a two-part
#    request): every request is answered, the bad ones with ok false and one line, and
#    the server keeps serving;
#  - a request gives the text the CLI prints after the prompt for the same seed and options;
#  - a second server on the same port is refused with one line; SIGTERM ends the server, exit 0.
set -e
NAME=e2e_serve
. tests/lib_e2e.sh
pid=
on_exit 'kill $pid 2>/dev/null'
SHOW_ON_FAIL="$tmp/serve.err"
client="$BUILD/tests/serve_client"
[ -x "$client" ] || fail "$client not built"
prep_bytes "$tmp/data"
cat > "$tmp/cfg.json" <<JSON
{"vocab_size": 256, "n_positions": 64, "n_embd": 64, "n_layer": 2, "n_head": 4,
 "batch_size": 8, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 5, "max_steps": 60,
 "eval_every": 0, "log_every": 100, "precision": "fp32",
 "status_endpoint": "none", "control_endpoint": "none", "metrics_endpoint": "none",
 "data_dir": "$tmp/data", "out_dir": "$tmp/run"}
JSON
"$BUILD/trainer" --config "$tmp/cfg.json" 2>"$tmp/train.err" || { cat "$tmp/train.err"; fail "trainer failed"; }
ck="$tmp/run/$(cat "$tmp/run/latest")"

port=$(free_ports 1)
ep=tcp://127.0.0.1:$port
"$BUILD/infer" --ckpt "$ck" --serve "$ep" 2>"$tmp/serve.err" &
pid=$!
WATCH=$pid wait_for_text "$tmp/serve.err" "serving on" 60

# four clients at once, and garbage in the middle of them
clients=
for c in 1 2 3 4; do
    "$client" "$ep" "{\"prompt\": \"Q$c \", \"max_tokens\": 30, \"seed\": $c, \"top_k\": 20}" \
        "{\"prompt\": \"A$c \", \"max_tokens\": 20, \"seed\": 1$c, \"temperature\": 0}" \
        >"$tmp/c$c.out" 2>"$tmp/c$c.err" &
    clients="$clients $!"
done
on_exit 'kill $clients 2>/dev/null'
python3 tests/send_garbage.py "$port" || fail "raw TCP write"
printf '{"prompt": "a\000b"}' > "$tmp/nul"
head -c 300 /dev/urandom > "$tmp/random"
"$client" "$ep" 'garbage {' "@$tmp/nul" '{"prompt": "a\u0000b"}' "@$tmp/random" '[1, 2]' \
    '{"max_tokens": -1}' '{"temperature": 101}' '{"top_p": -0.1}' '{"top_k": 1.5}' '{"seed": "x"}' '{"prompt": 7}' \
    '{"promt": "x"}' >"$tmp/bad.out" || fail "bad requests were not all answered"
"$client" "$ep" --parts '{"prompt": "a"}' '{"prompt": "b"}' >>"$tmp/bad.out" ||
    fail "two-part request not answered"
for c in $clients; do
    wait_for_exit "$c" 60
done
kill -0 "$pid" 2>/dev/null || fail "server died"

# the CLI's text for the same requests (the prompt, the text, a newline)
for c in 1 2 3 4; do
    "$BUILD/infer" --ckpt "$ck" --prompt "Q$c " -n 30 --seed $c --top-k 20 >"$tmp/cli$c.a" 2>/dev/null
    "$BUILD/infer" --ckpt "$ck" --prompt "A$c " -n 20 --seed 1$c --temperature 0 >"$tmp/cli$c.b" 2>/dev/null
done
python3 - "$tmp" <<'PY' || fail "replies"
import json, sys
tmp = sys.argv[1]
def cli(path, prompt):
    b = open(path, "rb").read()
    assert b.startswith(prompt.encode()) and b.endswith(b"\n"), b
    return b[len(prompt):-1].decode("utf-8", errors="replace")
for c in range(1, 5):
    lines = open("%s/c%d.out" % (tmp, c)).read().splitlines()
    assert len(lines) == 2, (c, lines)
    for line, (p, n, f) in zip(lines, (("Q%d " % c, 30, "a"), ("A%d " % c, 20, "b"))):
        r = json.loads(line)
        assert r["ok"] is True and r["tokens"] == n and r["tokens_per_s"] > 0, r
        want = cli("%s/cli%d.%s" % (tmp, c, f), p)
        assert r["text"] == want, (c, r["text"], want)
bad = [json.loads(l) for l in open(tmp + "/bad.out").read().splitlines()]
wants = ["not valid JSON", "NUL byte", "holds \\u0000", "", "JSON object", "max_tokens must be",
         "temperature must be", "top_p must be", "top_k must be", "seed must be", "prompt must be", "unknown field 'promt'",
         "one message part"]
assert len(bad) == len(wants), bad
for r, w in zip(bad, wants):
    assert r["ok"] is False and w in r["error"] and "\n" not in r["error"], (r, w)
print("serve: 8 requests from 4 concurrent clients and %d bad ones answered; texts match the CLI" % len(bad))
PY
# still serving after all that
"$client" "$ep" '{"prompt": "Z", "max_tokens": 5}' | grep -q '"ok":true' || fail "no reply after bad requests"

# the port is taken: a second server is refused with one line, exit 1
rc=0; "$BUILD/infer" --ckpt "$ck" --serve "$ep" >/dev/null 2>"$tmp/err2" || rc=$?
[ "$rc" -eq 1 ] && [ "$(wc -l < "$tmp/err2")" -eq 1 ] && grep -q "Address already in use" "$tmp/err2" ||
    { cat "$tmp/err2"; fail "second server on the same port: exit $rc"; }

kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
pid=
[ "$rc" -eq 0 ] || fail "server exit $rc after SIGTERM"
# a port left to ZeroMQ (tcp://HOST:*): the line names the one it got, which answers
"$BUILD/infer" --ckpt "$ck" --serve "tcp://127.0.0.1:*" 2>"$tmp/serve.err" &
pid=$!
WATCH=$pid wait_for_text "$tmp/serve.err" "serving on" 60
got=$(sed -n 's/.*serving on //p' "$tmp/serve.err")
case $got in tcp://127.0.0.1:[0-9]*) ;; *) fail "serving on '$got', not the port it got" ;; esac
"$client" "$got" '{"prompt": "Z", "max_tokens": 2}' | grep -q '"ok":true' || fail "no reply on $got"
kill -TERM "$pid"
wait "$pid" || fail "server on $got did not exit 0 on SIGTERM"
pid=
echo "PASS e2e_serve"
