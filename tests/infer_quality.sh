#!/bin/sh
# make infer-quality: int8 (with infer's default bf16 KV cache) against fp32
# (fp32 cache) on the whole Tiny Shakespeare val split.  Trains nanoGPT's shakespeare_char recipe (as `make shakespeare`, into its
# own run directory), then `build/infer --eval` in int8 (which also runs fp32 on the
# same windows) and checks: fp32 gives the trainer's final val loss, int8 agrees
# with fp32 on the greedy next token at >= 99% of the positions and raises the loss
# by <= 1%.  Prints the figures and appends them to $BUILD/bench.jsonl.
set -e
BUILD=${BUILD:-build}
TINYSHAKESPEARE=${TINYSHAKESPEARE:-../shared/data/tinyshakespeare.txt}
data="$BUILD/data/shakespeare_char"
run="$BUILD/runs/infer-quality"
[ -f "$TINYSHAKESPEARE" ] || { echo "infer-quality: $TINYSHAKESPEARE not found (set TINYSHAKESPEARE=path)"; exit 1; }
"$BUILD/prep" --input "$TINYSHAKESPEARE" --out "$data" --tokenizer byte --val-fraction 0.1 >/dev/null
rm -rf "$run"
mkdir -p "$BUILD/runs"
"$BUILD/trainer" --config launch/configs/shakespeare_char.json --set data_dir="$data" \
    --set out_dir="$run" --set eval_every=2000 --set status_endpoint=none \
    --set control_endpoint=none --set metrics_endpoint=none >/dev/null 2>"$run.stderr" || { cat "$run.stderr"; exit 1; }
ck="$run/$(cat "$run/latest")"
"$BUILD/infer" --ckpt "$ck" --quant int8 --eval "$data/val.tok" > "$run/eval.json"
python3 - "$run/log.jsonl" "$run/eval.json" "$BUILD/bench.jsonl" <<'PY'
import json, sys
val = [json.loads(l) for l in open(sys.argv[1]) if '"eval"' in l][-1]["val_loss"]
q = json.loads(open(sys.argv[2]).read())
print("Tiny Shakespeare val (%d windows x %d = %d tokens): trainer val loss %.4f, infer fp32 %.4f, "
      "int8 %.4f (%+.3f%%), greedy agreement int8/fp32 %.4f" % (q["windows"], q["seq_len"],
      q["tokens"], val, q["ref_loss"], q["loss"], 100 * q["loss_increase"], q["greedy_agreement"]))
row = {"bench": "infer-quality", "work": "shakespeare_char", "trainer_val_loss": val,
       "fp32_loss": q["ref_loss"], "int8_loss": q["loss"], "loss_increase": q["loss_increase"],
       "greedy_agreement": q["greedy_agreement"], "tokens": q["tokens"]}
open(sys.argv[3], "a").write(json.dumps(row) + "\n")
ok = (abs(q["ref_loss"] - val) <= 1e-4 * val and q["greedy_agreement"] >= 0.99
      and q["loss_increase"] <= 0.01)
print("infer-quality: %s" % ("PASS" if ok else "FAIL"))
sys.exit(0 if ok else 1)
PY
