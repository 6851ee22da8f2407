#!/bin/sh
# Fine-tuning an imported GPT-2 (random weights written by PyTorch, imported with
# build/import) on text tokenized with GPT-2's tokenizer:
#  - the first step's loss is of the imported model's kind (its large
#    embeddings make confident, wrong logits: far above a fresh model's ln V,
#    as infer --eval measures it on the val split), and 30 steps lower it;
#  - np 2 (batch split over ranks) gives np 1's losses within 1e-5 relative per step;
#  - a run stopped at step 15 and resumed with --resume auto gives steps 16..30
#    bit for bit, with the --init-from file gone by then;
#  - ZeRO 2 with bf16, recompute and a padded vocab_size (50304: the padding
#    logits are masked) follows the fp32 run's losses within bf16 rounding;
#  - a config whose dimensions disagree with the file is refused naming the key,
#    and data prepared with another tokenizer is refused naming both (by
#    --init-from (exit 2) and by --resume (exit 1)), and --resume auto in an
#    out_dir whose run is another model than --init-from's is refused naming
#    both (exit 2).
set -e
NAME=e2e_finetune
. tests/lib_e2e.sh
need_python_ml
need_gpt2_vocab
need_mpirun

$PY tests/hf_gpt2.py make "$tmp/hf" --tokenizer-dir "$TOKDIR" --dims 50257,64,64,2,4 --wte-std 0.5
"$BUILD/import" --hf "$tmp/hf" --out "$tmp/gpt2.h5" >/dev/null || fail "import failed"
head -c 400000 "$CORPUS" >"$tmp/corpus.txt" 2>/dev/null || cat "$CORPUS"/* | head -c 400000 >"$tmp/corpus.txt"
"$BUILD/prep" --input "$tmp/corpus.txt" --out "$tmp/data" --tokenizer gpt2 \
    --vocab-file "$TOKDIR/encoder.json" --merges "$TOKDIR/vocab.bpe" 2>/dev/null || fail "prep failed"
cat > "$tmp/ft.json" <<JSON
{"batch_size": 4, "seq_len": 64, "lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 3,
 "max_steps": 30, "lr_decay_steps": 30, "eval_every": 0, "log_every": 100,
 "precision": "fp32", "status_endpoint": "none", "control_endpoint": "none", "metrics_endpoint": "none",
 "data_dir": "$tmp/data"}
JSON
train() {   # out_dir, then trainer arguments; runs np 1 unless MP is set
    out=$1; shift
    ${MP:-} "$BUILD/trainer" --config "$tmp/ft.json" --init-from "$tmp/gpt2.h5" --set out_dir="$out" "$@" \
        >/dev/null 2>"$tmp/stderr" || { cat "$tmp/stderr"; fail "trainer failed: $*"; }
}
train "$tmp/np1" --set checkpoint_async=0
MP="$MPIRUN -np 2" train "$tmp/np2" --set batch_size=2 --set bucket_mb=1
# --resume auto in an empty out_dir (as launch/run.sh starts): init_from's weights
train "$tmp/half" --set max_steps=15 --set checkpoint_every=15 --resume auto
# a restart (the same command with --resume auto) continues from the run's
# checkpoint without init_from's file, which may have moved since the start
mv "$tmp/gpt2.h5" "$tmp/moved.h5"
train "$tmp/half" --resume auto
mv "$tmp/moved.h5" "$tmp/gpt2.h5"
# init_from's weights loaded after --resume auto found nothing, under ZeRO 2 in bf16
MP="$MPIRUN -np 2" train "$tmp/z2" --set batch_size=2 --set zero_stage=2 --set precision=bf16 \
    --set recompute=block --set vocab_size=50304 --set max_steps=10 --resume auto

# the imported model's own loss on the first batch, for the first-step check
"$BUILD/infer" --ckpt "$tmp/gpt2.h5" --quant fp32 --eval "$tmp/data/val.tok" --seq-len 64 \
    --eval-windows 8 >"$tmp/eval.json" || fail "infer --eval on the imported model failed"

$PY - "$tmp" <<'EOF' || fail "losses"
import json, math, sys
tmp = sys.argv[1]
def losses(run):
    return {r["step"]: r["loss"] for r in map(json.loads, open("%s/%s/log.jsonl" % (tmp, run)))
            if r["type"] == "step"}
a, b, c, z = losses("np1"), losses("np2"), losses("half"), losses("z2")
assert sorted(a) == list(range(1, 31)), sorted(a)
first, last = sum(a[s] for s in range(1, 6)) / 5, sum(a[s] for s in range(26, 31)) / 5
assert last < first - 0.05, ("the loss did not go down", first, last)
imported = json.load(open(tmp + "/eval.json"))["loss"]
fresh = math.log(50257)   # a freshly initialised model's loss
assert imported > 1.5 * fresh, ("the imported model is too close to a fresh one", imported)
assert a[1] > 1.5 * fresh, ("step 1 does not start from the imported weights", a[1], imported)
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
assert worst <= 1e-5, ("np 2 differs from np 1", worst)
bad = [(s, a[s], c[s]) for s in range(16, 31) if a[s] != c[s]]
assert not bad, ("the resumed run differs", bad)
assert sorted(z) == list(range(1, 11)), z
zworst = max(abs(z[s] - a[s]) / a[s] for s in z)   # padding rows are masked: the same loss
assert zworst < 0.03, ("ZeRO 2 bf16 recompute with padding strays from np 1 fp32", zworst, z, a)
print("fine-tune: loss %.4f -> %.4f (imported model %.4f); np 2 within %.1e of np 1; "
      "steps 16..30 bit-identical after resume; ZeRO 2 bf16 recompute vocab 50304 within %.1e"
      % (first, last, imported, worst, zworst))
EOF

if "$BUILD/trainer" --config "$tmp/ft.json" --init-from "$tmp/gpt2.h5" --set n_embd=128 \
    --set out_dir="$tmp/bad" 2>"$tmp/stderr"; then fail "a config with another n_embd was accepted"; fi
grep -q "n_embd is 128 but .*gpt2.h5 has 64" "$tmp/stderr" || { cat "$tmp/stderr"; fail "wrong refusal"; }
# data tokenized otherwise (bytes) would give the model's ids other meanings
"$BUILD/prep" --input "$tmp/corpus.txt" --out "$tmp/bytes" --tokenizer byte 2>/dev/null || fail "prep bytes"
if "$BUILD/trainer" --config "$tmp/ft.json" --init-from "$tmp/gpt2.h5" --set data_dir="$tmp/bytes" \
    --set out_dir="$tmp/bad" 2>"$tmp/stderr"; then fail "byte-level data was accepted for GPT-2"; else rc=$?; fi
[ "$rc" -eq 2 ] || { cat "$tmp/stderr"; fail "--init-from with another tokenizer: exit $rc, not 2"; }
grep -q "gpt2.h5 holds a gpt2 tokenizer of 50257 tokens and .*bytes/tokenizer.json a byte one of 256" \
    "$tmp/stderr" || { cat "$tmp/stderr"; fail "wrong refusal of the tokenizer"; }
if "$BUILD/trainer" --config "$tmp/ft.json" --set data_dir="$tmp/bytes" --set out_dir="$tmp/np1" \
    --set vocab_size=50257 --set n_positions=64 --set n_embd=64 --set n_layer=2 --set n_head=4 \
    --set max_steps=40 --resume auto 2>"$tmp/stderr"; then fail "resumed on byte-level data"; else rc=$?; fi
[ "$rc" -eq 1 ] || { cat "$tmp/stderr"; fail "--resume with another tokenizer: exit $rc, not 1"; }
grep -q "ckpt_000030.h5 holds a gpt2 tokenizer" "$tmp/stderr" || { cat "$tmp/stderr"; fail "wrong refusal on resume"; }
# a new fine-tune of a 3-layer model pointed at the 2-layer run's out_dir
$PY tests/hf_gpt2.py make "$tmp/hf3" --tokenizer-dir "$TOKDIR" --dims 50257,64,64,3,4
"$BUILD/import" --hf "$tmp/hf3" --out "$tmp/gpt2_3.h5" >/dev/null || fail "import of the 3-layer model failed"
if "$BUILD/trainer" --config "$tmp/ft.json" --init-from "$tmp/gpt2_3.h5" --set out_dir="$tmp/np1" \
    --set max_steps=40 --resume auto 2>"$tmp/stderr"; then fail "resumed another model than init_from's"; else rc=$?; fi
[ "$rc" -eq 2 ] || { cat "$tmp/stderr"; fail "--resume of another model than init_from's: exit $rc, not 2"; }
grep -q "would continue .*ckpt_000030.h5 (n_layer 2, .*not init_from .*gpt2_3.h5 (n_layer 3," "$tmp/stderr" ||
    { cat "$tmp/stderr"; fail "wrong refusal of another model"; }
echo "PASS e2e_finetune"
