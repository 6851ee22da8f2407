#!/bin/sh
# End to end: prep a real corpus (Debian's fortunes, installed by `make deps`),
# train a small byte-level model for 60 steps, and check that the loss falls,
# that log.jsonl holds well-formed step and eval records, that grad_accum 2 x
# batch 4 trains as batch 8 (loss, clip norm, lr every step), and that bad
# configurations and environment variables are refused with a one-line reason
# and a non-zero exit.
set -e
NAME=e2e_train
. tests/lib_e2e.sh
prep_bytes "$tmp/data"

cat > "$tmp/cfg.json" <<JSON
{"vocab_size": 256, "n_positions": 64, "n_embd": 64, "n_layer": 2, "n_head": 4,
 "batch_size": 8, "lr": 2e-3, "min_lr": 2e-4, "warmup_steps": 10, "max_steps": 60,
 "eval_every": 30, "eval_batches": 4, "log_every": 30,
 "data_dir": "$tmp/data", "out_dir": "$tmp/run",
 "status_endpoint": "none", "control_endpoint": "none", "metrics_endpoint": "none"}
JSON
"$BUILD/trainer" --config "$tmp/cfg.json" 2>"$tmp/stderr" || { cat "$tmp/stderr"; fail "trainer exited non-zero"; }

python3 - "$tmp/run/log.jsonl" <<'PY' || fail "log.jsonl check"
import json, math, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
steps = [r for r in recs if r["type"] == "step"]
evals = [r for r in recs if r["type"] == "eval"]
assert len(steps) == 60, len(steps)
need = ["type", "step", "max_steps", "loss", "lr", "tokens_per_s", "mfu", "grad_norm",
        "elapsed_s", "eta_s", "ranks", "loader_wait_ms", "comm_ms", "rss_mb", "time"]
for r in steps:
    missing = [k for k in need if k not in r]
    assert not missing, missing
    assert math.isfinite(r["loss"])
first = steps[0]["loss"]
last = sum(r["loss"] for r in steps[-10:]) / 10
assert abs(first - math.log(256)) < 0.3, first
assert last < first - 1.5, (first, last)        # from ~5.5 to well under 4 on real text
assert len(evals) == 2 and all(math.isfinite(e["val_loss"]) for e in evals)
assert evals[-1]["val_loss"] < first - 1.0
# the default precision auto: the training event names what it measured and chose
ev = [r for r in recs if r.get("message", "").startswith("training ")][0]
g = ev["measured_gflops"]
assert ev["precision"] in g and g["fp32"] > 0 and ev["measure_s"] >= 0, ev
assert g[ev["precision"]] == max(g.values()) or ev["precision"] == "fp32", ev
print("loss %.3f -> %.3f, val %.3f" % (first, last, evals[-1]["val_loss"]))
PY

# grad_accum 2 x batch 4 is batch 8 in one micro-batch: the loss averaged over
# the same 8 sequences, one clip norm over the summed gradient, one learning
# rate step per update (warmup, then decay; grad_clip 0.5 clips every step)
for a in 1 2; do
    "$BUILD/trainer" --config "$tmp/cfg.json" --set out_dir="$tmp/accum$a" --set precision=fp32 \
        --set grad_accum=$a --set batch_size=$((8 / a)) --set max_steps=12 --set warmup_steps=4 \
        --set eval_every=0 --set grad_clip=0.5 --set checkpoint_every=0 2>"$tmp/accum$a.err" ||
        { cat "$tmp/accum$a.err"; fail "grad_accum $a: trainer exited non-zero"; }
done
python3 - "$tmp/accum1/log.jsonl" "$tmp/accum2/log.jsonl" <<'PY' || fail "grad_accum 2 x batch 4 differs from batch 8"
import json, sys
one, two = ([r for r in map(json.loads, open(p)) if r["type"] == "step"] for p in sys.argv[1:])
assert len(one) == len(two) == 12, (len(one), len(two))
worst = 0
for a, b in zip(one, two):
    for k in ("loss", "grad_norm", "lr"):
        d = abs(a[k] - b[k]) / max(abs(a[k]), 1e-12)
        assert d < 1e-5, (a["step"], k, a[k], b[k])
        worst = max(worst, d)
print("grad_accum 2 x batch 4: 12 steps' loss, gradient norm and lr within %.1e of batch 8" % worst)
PY

expect_refused() {   # expected-substring, trainer args ($env_set: VAR=value for its environment)
    want=$1; shift
    if env ${env_set:-} "$BUILD/trainer" "$@" 2>"$tmp/err"; then fail "accepted: ${env_set:-} $*"; fi
    [ "$(wc -l < "$tmp/err")" -eq 1 ] || { cat "$tmp/err"; fail "error is not one line: $*"; }
    grep -q "$want" "$tmp/err" || { cat "$tmp/err"; fail "error does not mention '$want'"; }
}
expect_refused "unknown config key" --config "$tmp/cfg.json" --set n_embdd=64
expect_refused "not divisible" --config "$tmp/cfg.json" --set n_head=3
expect_refused "vocab_size" --config "$tmp/cfg.json" --set vocab_size=100
expect_refused "not a number" --config "$tmp/cfg.json" --set lr=fast
echo '{"n_layer": 2,' > "$tmp/bad.json"
expect_refused "not valid JSON (line 1: {\"n_layer\": 2,)" --config "$tmp/bad.json"
expect_refused "required" --set lr=1
expect_refused "^trainer: --config given twice" --config "$tmp/cfg.json" --config "$tmp/cfg.json"
expect_refused "^trainer: --resume given twice" --config "$tmp/cfg.json" --resume auto --resume auto
expect_refused "^trainer: unknown argument \"--resum\"" --config "$tmp/cfg.json" --resum auto
expect_refused "^trainer: --resume needs a value" --config "$tmp/cfg.json" --resume
# refusals that exit 2, as a bad config does (launch/run.sh does not restart
# them): a config larger than the machine's whole memory; a split shorter than
# one window (seq_len + 1 tokens), naming the keys that set the window; a short
# val split, naming eval_every too while the run evaluates (no obstacle to a run
# that does not)
refused_as_config() {   # expected-substring, trainer args
    want=$1; shift
    if "$BUILD/trainer" "$@" 2>"$tmp/err"; then fail "accepted: $*"; else rc=$?; fi
    [ "$rc" -eq 2 ] && [ "$(wc -l < "$tmp/err")" -eq 1 ] && grep -q -F -- "$want" "$tmp/err" ||
        { cat "$tmp/err"; fail "$* (exit $rc) does not say '$want' with exit 2"; }
}
# more memory than the machine has in all: no restart would find it
refused_as_config "but this machine has" --config "$tmp/cfg.json" --set n_embd=32768 --set n_head=8 \
    --set n_positions=4096
head -c 3000 "$CORPUS/fortunes" > "$tmp/short.txt"
"$BUILD/prep" --input "$tmp/short.txt" --out "$tmp/shortval" --val-fraction 0.01 2>/dev/null ||
    fail "prep of the short val split failed"
refused_as_config "val.tok: 30 tokens is too few for windows of 64+1 tokens (eval_every 0 \
trains without evaluating, or lower seq_len (n_positions when not given))" \
    --config "$tmp/cfg.json" --set data_dir="$tmp/shortval" --set out_dir="$tmp/shortval-run"
refused_as_config "train.tok: 2970 tokens is too few for windows of 4096+1 tokens (lower \
seq_len (n_positions when not given), or give more data)" --config "$tmp/cfg.json" \
    --set data_dir="$tmp/shortval" --set out_dir="$tmp/shortval-run" --set n_positions=4096
"$BUILD/trainer" --config "$tmp/cfg.json" --set data_dir="$tmp/shortval" --set eval_every=0 \
    --set out_dir="$tmp/shortval-run" --set max_steps=2 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "eval_every 0: refused for a val split it does not read"; }
# --set wins over the file whatever the order on the command line
expect_refused "not divisible" --set n_head=3 --config "$tmp/cfg.json"
# an environment variable the trainer reads, set to a value it cannot honour:
# refused the same way, before the run starts (nothing made under out_dir)
for env_set in GPT_ISA=avx1024 GPT_PEAK_GFLOPS=fast GPT_PEAK_BF16_GFLOPS=-1 GPT_BF16_EMULATE=yes \
    GPT_PRECISION_CACHE=off GPT_RESTARTS=-1 SLURM_RESTART_COUNT=x; do
    expect_refused "^trainer: $env_set is not " --config "$tmp/cfg.json" --set out_dir="$tmp/never"
done
env_set=
[ ! -e "$tmp/never" ] || fail "a refused environment made $tmp/never"
# OMP_NUM_THREADS that OpenMP refuses (it warns itself, then would run on every
# CPU): the trainer stops; one it takes (spaces around a count) runs
for v in 0 2,x; do
    if OMP_NUM_THREADS=$v "$BUILD/trainer" --config "$tmp/cfg.json" --set out_dir="$tmp/never" 2>"$tmp/err"; then
        fail "accepted OMP_NUM_THREADS=$v"
    fi
    [ "$(tail -n 1 "$tmp/err")" = "trainer: OMP_NUM_THREADS=$v is not a list of thread counts >= 1 (such as 4 or 4,1)" ] ||
        { cat "$tmp/err"; fail "OMP_NUM_THREADS=$v: no reason"; }
done
[ ! -e "$tmp/never" ] || fail "a refused OMP_NUM_THREADS made $tmp/never"
OMP_NUM_THREADS="1 " "$BUILD/trainer" --config "$tmp/cfg.json" --set out_dir="$tmp/spaced" --set max_steps=1 \
    2>"$tmp/err" || { cat "$tmp/err"; fail "OMP_NUM_THREADS='1 ' refused"; }
echo "PASS e2e_train"
