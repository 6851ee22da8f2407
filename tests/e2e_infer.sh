#!/bin/sh
# End to end: build/infer on a checkpoint the trainer wrote.
#  - a tiny byte-level model trained 400 steps; infer generates text after --prompt in
#    int8, bf16 and fp32; the same --seed gives the same text; a --save-quantized file
#    gives the int8 text and --eval figures, and one that SIGTERM stops leaves no .tmp;
#  - --eval: fp32 gives the trainer's own val loss on the same windows (a padded
#    vocabulary too); int8 agrees with fp32 on the greedy next token at >= 99% of the
#    positions and raises the loss <= 1%, and so does bf16 (2-byte weights), on its active
#    path and widening (GPT_ISA=avx2, skipped on a CPU without AVX2, which infer refuses);
#  - greedy generation stops when the context (n_positions) is full;
#  - --bench prints one JSON object with the required fields;
#  - a truncated checkpoint is refused with one line and exit 1, bad flags and a
#    GPT_ISA that names no kernel path exit 2.
set -e
NAME=e2e_infer
. tests/lib_e2e.sh
prep_bytes "$tmp/data"
cat > "$tmp/cfg.json" <<JSON
{"vocab_size": 256, "n_positions": 64, "n_embd": 64, "n_layer": 2, "n_head": 4,
 "batch_size": 8, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 5, "max_steps": 400,
 "eval_every": 400, "eval_batches": 50, "log_every": 100, "precision": "fp32",
 "status_endpoint": "none", "control_endpoint": "none", "metrics_endpoint": "none",
 "data_dir": "$tmp/data", "out_dir": "$tmp/run"}
JSON
"$BUILD/trainer" --config "$tmp/cfg.json" 2>"$tmp/train.err" || { cat "$tmp/train.err"; fail "trainer failed"; }
ck="$tmp/run/$(cat "$tmp/run/latest")"
[ -f "$ck" ] || fail "no checkpoint written"

# generation in each precision; the prompt comes first, then the new text
for q in int8 bf16 fp32; do
    "$BUILD/infer" --ckpt "$ck" --quant $q --prompt "The " -n 40 --seed 7 >"$tmp/$q.a" 2>"$tmp/err" ||
        { cat "$tmp/err"; fail "infer --quant $q failed"; }
    "$BUILD/infer" --ckpt "$ck" --quant $q --prompt "The " -n 40 --seed 7 >"$tmp/$q.b" 2>/dev/null
    cmp -s "$tmp/$q.a" "$tmp/$q.b" || fail "--quant $q: the same seed gave different text"
    head -c 4 "$tmp/$q.a" | grep -q "^The " || fail "--quant $q: output does not start with the prompt"
    [ "$(wc -c < "$tmp/$q.a")" -ge 30 ] || fail "--quant $q: too little text"
    grep -q "40 tokens" "$tmp/err" || { cat "$tmp/err"; fail "--quant $q: no summary line"; }
done
"$BUILD/infer" --ckpt "$ck" --prompt "The " -n 40 --seed 8 >"$tmp/int8.c" 2>/dev/null
cmp -s "$tmp/int8.a" "$tmp/int8.c" && fail "seeds 7 and 8 gave the same text"

# --save-quantized: the int8 file gives the very text of quantizing at load; it is int8 only
"$BUILD/infer" --ckpt "$ck" --save-quantized "$tmp/q8.h5" 2>"$tmp/err" || { cat "$tmp/err"; fail "--save-quantized"; }
"$BUILD/infer" --ckpt "$tmp/q8.h5" --prompt "The " -n 40 --seed 7 >"$tmp/q8.a" 2>/dev/null || fail "loading the int8 file"
cmp -s "$tmp/int8.a" "$tmp/q8.a" || fail "the int8 file gave other text than the checkpoint"
# a --save-quantized that SIGTERM (or Ctrl-C) stops takes its model-sized .tmp along.
# On a disk of 0.08 MB/s (tests/slow_disk.c) the 170 KB file takes 2 s; the process
# is frozen (SIGSTOP) while its .tmp exists, so the signal lands in the write
# whatever the machine's speed.
slow_disk 0.08
on_exit 'kill -9 $pid 2>/dev/null'
$SLOW "$BUILD/infer" --ckpt "$ck" --save-quantized "$tmp/q8s.h5" 2>"$tmp/err" &
pid=$!
SHOW_ON_FAIL="$tmp/err" WATCH=$pid wait_for_file "$tmp/q8s.h5.tmp" 60
kill -STOP "$pid"
[ -e "$tmp/q8s.h5.tmp" ] || { kill -CONT "$pid"; fail "SIGTERM: the save ended before infer was frozen"; }
kill -TERM "$pid"
kill -CONT "$pid"
set +e; wait "$pid" 2>/dev/null; rc=$?; set -e
pid=
[ "$rc" -eq 143 ] || { cat "$tmp/err"; fail "SIGTERM during --save-quantized: exit $rc, not 143"; }
left=$(ls "$tmp" | grep '^q8s' || true)
[ -z "$left" ] || fail "SIGTERM during --save-quantized left $left"
echo "--save-quantized stopped by SIGTERM: killed by it, no q8s.h5.tmp left"

# --eval on the trainer's val windows (eval_batches 50 x batch_size 8 = the first 400)
for q in fp32 int8; do
    "$BUILD/infer" --ckpt "$ck" --quant $q --eval "$tmp/data/val.tok" --eval-windows 400 \
        >"$tmp/eval.$q" 2>"$tmp/err" || { cat "$tmp/err"; fail "--eval --quant $q failed"; }
done
python3 - "$tmp/run/log.jsonl" "$tmp/eval.fp32" "$tmp/eval.int8" <<'PY' || fail "--eval figures"
import json, sys
val = [json.loads(l) for l in open(sys.argv[1]) if '"eval"' in l][-1]["val_loss"]
f = json.loads(open(sys.argv[2]).read())
q = json.loads(open(sys.argv[3]).read())
print("eval: trainer val loss %.6f, infer fp32 %.6f; int8 %.6f (+%.3f%%), greedy agreement %.4f" %
      (val, f["loss"], q["loss"], 100 * q["loss_increase"], q["greedy_agreement"]))
assert f["windows"] == 400 and f["tokens"] == 400 * 64, f
assert abs(f["loss"] - val) <= 1e-4 * val, (f["loss"], val)
assert q["ref_quant"] == "fp32" and abs(q["ref_loss"] - f["loss"]) <= 1e-6 * f["loss"], q
assert q["greedy_agreement"] >= 0.99, q
assert q["loss_increase"] <= 0.01, q
PY
# the int8 file: the same int8 figures; it holds no fp32 weights to compare with
"$BUILD/infer" --ckpt "$tmp/q8.h5" --eval "$tmp/data/val.tok" --eval-windows 400 \
    >"$tmp/eval.q8" 2>"$tmp/err" || { cat "$tmp/err"; fail "--eval on the int8 file failed"; }
python3 - "$tmp/eval.int8" "$tmp/eval.q8" <<'PY' || fail "--eval on the int8 file: other figures"
import json, sys
q, f = (json.loads(open(p).read()) for p in sys.argv[1:])
assert "ref_loss" not in f and (f["loss"], f["accuracy"]) == (q["loss"], q["accuracy"]), (f, q)
PY

# bf16 (2-byte weights) against fp32 on the same windows: on the active path
# (vdpbf16ps where the CPU has AVX512-BF16, activations rounded to bf16 too)
# and widening the weights (GPT_ISA=avx2: fp32's arithmetic on bf16 weights);
# where load found oneDNN's bf16 matmul faster, the windows' products run
# there on either (GPT_ISA picks our kernels, not oneDNN's), decode's not;
# greedy text against fp32's, for the record (one near tie changes the rest)
"$BUILD/infer" --ckpt "$ck" --quant fp32 --prompt "The " -n 40 --temperature 0 >"$tmp/greedy.fp32" 2>/dev/null
for isa in "" avx2; do
    if ! GPT_ISA=$isa "$BUILD/infer" --ckpt "$ck" --quant bf16 --eval "$tmp/data/val.tok" --eval-windows 400 \
        >"$tmp/eval.bf16" 2>"$tmp/err"; then
        if grep -q "^infer: GPT_ISA=$isa: this CPU cannot run that path" "$tmp/err"; then
            skip_part "bf16 widening (GPT_ISA=$isa)" "$(cat "$tmp/err")"
            continue
        fi
        cat "$tmp/err"
        fail "--eval --quant bf16 (GPT_ISA=$isa) failed"
    fi
    GPT_ISA=$isa "$BUILD/infer" --ckpt "$ck" --quant bf16 --prompt "The " -n 40 --temperature 0 \
        >"$tmp/greedy.bf16" 2>/dev/null || fail "--quant bf16 greedy (GPT_ISA=$isa) failed"
    python3 - "$tmp/eval.bf16" "$tmp/greedy.fp32" "$tmp/greedy.bf16" "${isa:-best}" <<'PY' || fail "--eval --quant bf16 figures"
import json, sys
b = json.loads(open(sys.argv[1]).read())
f, g = open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read()
same = next((i for i, (x, y) in enumerate(zip(f, g)) if x != y), min(len(f), len(g)))
print("eval: bf16 (GPT_ISA=%s) %.6f (+%.3f%%), greedy agreement %.4f; greedy text: first %d of %d bytes as fp32's" %
      (sys.argv[4], b["loss"], 100 * b["loss_increase"], b["greedy_agreement"], same, len(f)))
assert b["ref_quant"] == "fp32", b
assert b["greedy_agreement"] >= 0.99, b
assert abs(b["loss_increase"]) <= 0.01, b
PY
done

# a vocabulary padded past the tokenizer's 256 tokens: the trainer masks the padding
# rows out of its loss, and --eval does too, so it still gives the trainer's val loss
"$BUILD/trainer" --config "$tmp/cfg.json" --set vocab_size=320 --set max_steps=30 \
    --set eval_every=30 --set eval_batches=5 --set out_dir="$tmp/pad" 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "trainer (vocab_size 320) failed"; }
"$BUILD/infer" --ckpt "$tmp/pad/$(cat "$tmp/pad/latest")" --quant fp32 --eval "$tmp/data/val.tok" \
    --eval-windows 40 >"$tmp/eval.pad" 2>"$tmp/err" || { cat "$tmp/err"; fail "--eval (vocab_size 320) failed"; }
python3 - "$tmp/pad/log.jsonl" "$tmp/eval.pad" <<'PY' || fail "--eval on a padded vocabulary"
import json, sys
val = [json.loads(l) for l in open(sys.argv[1]) if '"eval"' in l][-1]["val_loss"]
f = json.loads(open(sys.argv[2]).read())
assert f["windows"] == 40 and abs(f["loss"] - val) <= 1e-4 * val, (f["loss"], val)
PY

# the context is 64 tokens: greedy generation of 1000 stops when it is full
"$BUILD/infer" --ckpt "$ck" --prompt "Hello" -n 1000 --temperature 0 >"$tmp/full" 2>"$tmp/err" ||
    fail "long generation failed"
grep -q "60 tokens.*context is full" "$tmp/err" || { cat "$tmp/err"; fail "no context-full stop"; }

# --bench's default prompt in a context shorter than it: half the context
"$BUILD/trainer" --config "$tmp/cfg.json" --set n_positions=8 --set max_steps=2 \
    --set out_dir="$tmp/short" 2>"$tmp/err" || { cat "$tmp/err"; fail "trainer (context 8) failed"; }
"$BUILD/infer" --ckpt "$tmp/short/$(cat "$tmp/short/latest")" --bench >"$tmp/bench.json" 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "--bench in a context of 8 tokens failed"; }
grep -q '"n_prompt":4' "$tmp/bench.json" || { cat "$tmp/bench.json"; fail "--bench in a context of 8: not a 4-token prompt"; }

# --bench: one JSON object with the required fields
for q in int8 bf16 fp32; do
    "$BUILD/infer" --ckpt "$ck" --quant $q --bench -n 40 >"$tmp/bench.json" 2>"$tmp/err" ||
        { cat "$tmp/err"; fail "--bench failed"; }
    python3 - "$tmp/bench.json" $q <<'PY' || fail "--bench output"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1, lines
r = json.loads(lines[0])
for k in ("prefill_tokens_per_s", "decode_tokens_per_s", "quant", "rss_mb", "n_prompt", "n_generated"):
    assert k in r, k
assert r["quant"] == sys.argv[2] and r["n_prompt"] == 16 and r["n_generated"] == 40, r
assert r["prefill_tokens_per_s"] > 0 and r["decode_tokens_per_s"] > 0 and r["rss_mb"] > 0, r
print("bench %s: prefill %.0f tok/s, decode %.0f tok/s, rss %.1f MB" %
      (r["quant"], r["prefill_tokens_per_s"], r["decode_tokens_per_s"], r["rss_mb"]))
PY
done

# refusals: one line, exit 1 for the checkpoint, 2 for the command line
expect_exit() {   # code, expected-substring, infer args...
    code=$1; want=$2; shift 2
    rc=0; "$BUILD/infer" "$@" >/dev/null 2>"$tmp/err" || rc=$?
    [ "$rc" -eq "$code" ] || { cat "$tmp/err"; fail "exit $rc, not $code: $*"; }
    [ "$(wc -l < "$tmp/err")" -eq 1 ] || { cat "$tmp/err"; fail "error is not one line: $*"; }
    grep -q -- "$want" "$tmp/err" || { cat "$tmp/err"; fail "error does not mention '$want': $*"; }
}
head -c 30000 "$ck" > "$tmp/half.h5"
expect_exit 1 "truncated or damaged" --ckpt "$tmp/half.h5"
head -c 30000 "$tmp/q8.h5" > "$tmp/q8half.h5"
expect_exit 1 "truncated or damaged" --ckpt "$tmp/q8half.h5"
expect_exit 1 "runs only with --quant int8" --ckpt "$tmp/q8.h5" --quant fp32
expect_exit 2 "needs --quant int8" --ckpt "$ck" --quant bf16 --save-quantized "$tmp/x.h5"
expect_exit 1 "No such file" --ckpt "$tmp/none.h5"
# --save-quantized never replaces a file, not even the checkpoint it reads
sum=$(cksum <"$ck")
expect_exit 2 "$ck already exists (choose a new file name)" --ckpt "$ck" --save-quantized "$ck"
[ "$(cksum <"$ck")" = "$sum" ] && [ ! -e "$ck.tmp" ] || fail "--save-quantized onto --ckpt changed it"
expect_exit 2 "invalid value 'int4' for --quant" --ckpt "$ck" --quant int4
expect_exit 2 "unknown option '--frobnicate'" --ckpt "$ck" --frobnicate 1
expect_exit 2 "invalid value 'x' for -n" --ckpt "$ck" -n x
expect_exit 2 "invalid value '1.5' for --top-p" --ckpt "$ck" --top-p 1.5
expect_exit 2 "invalid value '18446744073709551616' for --seed" --ckpt "$ck" --seed 18446744073709551616
expect_exit 2 "needs an endpoint to listen on" --ckpt "$ck" --serve none
expect_exit 2 "--ckpt FILE.h5 is required" --prompt hi
expect_exit 1 "cannot open" --ckpt "$ck" --eval "$tmp/none.tok"
expect_exit 2 "exceeds n_positions" --ckpt "$ck" --eval "$tmp/data/val.tok" --seq-len 65
expect_exit 2 "separate modes" --ckpt "$ck" --bench --eval "$tmp/data/val.tok"
expect_exit 2 "--seq-len applies to --eval only" --ckpt "$ck" --seq-len 32 -n 4
expect_exit 2 "--eval-windows applies to --eval only" --ckpt "$ck" --bench --eval-windows 2
expect_exit 2 "needs a value" --ckpt
# GPT_ISA naming no kernel path: refused before the checkpoint is read
rc=0; GPT_ISA=avx1024 "$BUILD/infer" --ckpt "$tmp/none.h5" >/dev/null 2>"$tmp/err" || rc=$?
[ "$rc" -eq 2 ] && [ "$(cat "$tmp/err")" = "infer: GPT_ISA=avx1024 is not a kernel path (scalar, avx2 or avx512)" ] ||
    { cat "$tmp/err"; fail "GPT_ISA=avx1024: exit $rc"; }
# output that cannot be written (a full disk) is an error, not a silent success
for mode in "--prompt The -n 5" "--eval $tmp/data/val.tok --eval-windows 2" "--bench -n 5"; do
    rc=0; "$BUILD/infer" --ckpt "$ck" $mode >/dev/full 2>"$tmp/err" || rc=$?
    [ "$rc" -eq 1 ] && grep -q "^infer: cannot write the output: " "$tmp/err" ||
        { cat "$tmp/err"; fail "infer $mode >/dev/full: exit $rc"; }
done
"$BUILD/infer" --help | grep -q "usage: build/infer" || fail "--help"
echo "PASS e2e_infer"
