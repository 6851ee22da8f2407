#!/bin/sh
# make bench's GPT-2 rows: build/import of a gpt2-124M-sized Hugging Face folder
# (random weights PyTorch writes, F32) -- seconds and peak RSS against the
# model's size -- then fine-tuning it from the import on Tiny Shakespeare (or
# the default corpus) tokenized with GPT-2's tokenizer, T 1024 with recompute,
# np 1 x 2 threads (B 4) against np 2 x 1 thread (B 2 each): median tokens/s
# after the first step and peak RSS per rank.  Rows go to $BENCH_JSONL.
# Needs Debian's python3-torch and GPT-2's vocabulary (make deps).
set -e
NAME=bench_gpt2
. tests/lib_e2e.sh
BENCH_JSONL=${BENCH_JSONL:-$BUILD/bench.jsonl}
STEPS=${BENCH_FT_STEPS:-4}
need_python_ml
need_gpt2_vocab
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

$PY tests/hf_gpt2.py make "$tmp/hf" --tokenizer-dir "$TOKDIR" --dims 50257,1024,768,12,12
/usr/bin/time -f "%e %M" -o "$tmp/import.time" "$BUILD/import" --hf "$tmp/hf" --out "$tmp/gpt2.h5" >/dev/null
read -r secs kb <"$tmp/import.time"
mb=$(du -m "$tmp/hf/model.safetensors" | cut -f1)
echo "import gpt2-124M ($mb MB of F32 safetensors): $secs s, peak RSS $((kb / 1024)) MB"
echo "{\"bench\": \"import\", \"model\": \"gpt2-124M\", \"seconds\": $secs, \"peak_rss_mb\": $((kb / 1024)), \"safetensors_mb\": $mb}" >>"$BENCH_JSONL"

text=${TINYSHAKESPEARE:-../shared/data/tinyshakespeare.txt}
[ -f "$text" ] || text=$CORPUS
"$BUILD/prep" --input "$text" --out "$tmp/data" --tokenizer gpt2 \
    --vocab-file "$TOKDIR/encoder.json" --merges "$TOKDIR/vocab.bpe" >/dev/null 2>&1
finetune() {   # np, batch per rank, launcher words...
    np=$1; b=$2; shift 2
    "$@" "$BUILD/trainer" --config launch/configs/gpt2-124M-finetune.json --init-from "$tmp/gpt2.h5" \
        --set data_dir="$tmp/data" --set out_dir="$tmp/np$np" --set batch_size="$b" --set grad_accum=1 \
        --set max_steps="$STEPS" --set log_every=1 --set eval_every=0 --set checkpoint_every=0 \
        --set checkpoint_async=0 --set status_endpoint=none --set control_endpoint=none \
        --set metrics_endpoint=none >/dev/null 2>"$tmp/np$np.err" || { cat "$tmp/np$np.err"; fail "np $np fine-tune"; }
    $PY - "$tmp/np$np/log.jsonl" "$np" "$BENCH_JSONL" <<'PY'
import json, sys
log, np, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
steps = [r for r in map(json.loads, open(log)) if r["type"] == "step"][1:]
tps = sorted(r["tokens_per_s"] for r in steps)[len(steps) // 2]
rss = max(r.get("peak_rss_mb", 0) for r in steps)
row = {"bench": "finetune", "model": "gpt2-124M", "seq_len": 1024, "recompute": "block",
       "np": np, "tokens_per_s": round(tps, 1), "peak_rss_mb": round(rss)}
print("fine-tune gpt2-124M T 1024 recompute, np %d: %.0f tok/s, peak RSS %d MB per rank" % (np, tps, rss))
open(out, "a").write(json.dumps(row) + "\n")
PY
}
finetune 1 4
finetune 2 2 mpirun -np 2 --bind-to none -x OMP_NUM_THREADS=1
