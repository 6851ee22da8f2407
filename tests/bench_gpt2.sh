#!/bin/sh
# make bench's GPT-2 rows: build/import of a gpt2-124M-sized Hugging Face folder
# (random weights PyTorch writes, F32) -- seconds and peak RSS against the
# model's size -- then its decode as GGUF (f32, f16, q8_0) by build/infer
# against llama.cpp's llama-bench on the same file (built from the source
# node-llama-cpp bundles; skipped without it), then fine-tuning it from the
# import on Tiny Shakespeare (or the default corpus) tokenized with GPT-2's
# tokenizer, T 1024 with recompute, np 1 x 2 threads (B 4) against np 2 x 1
# thread (B 2 each): median tokens/s after the first step and peak RSS per
# rank.  Rows go to $BENCH_JSONL.
#   INFER_RUNS            decode rounds per file (default 3)
#   BENCH_DECODE_THREADS  the decode rows' second thread count (default nproc)
#   BENCH_FT_STEPS        fine-tuning steps (default 4)
# Needs Debian's python3-torch and GPT-2's vocabulary (make deps).
set -e
NAME=bench_gpt2
. tests/lib_e2e.sh
BENCH_JSONL=${BENCH_JSONL:-$BUILD/bench.jsonl}
STEPS=${BENCH_FT_STEPS:-4}
DECODE_RUNS=${INFER_RUNS:-3}
MODULES=${NODE_MODULES:-build/npm/node_modules}
need_python_ml
need_gpt2_vocab
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

$PY tests/hf_gpt2.py make "$tmp/hf" --tokenizer-dir "$TOKDIR" --dims 50257,1024,768,12,12
/usr/bin/time -f "%e %M" -o "$tmp/import.time" "$BUILD/import" --hf "$tmp/hf" --out "$tmp/gpt2.h5" >/dev/null
read -r secs kb <"$tmp/import.time"
mb=$(du -m "$tmp/hf/model.safetensors" | cut -f1)
echo "import gpt2-124M ($mb MB of F32 safetensors): $secs s, peak RSS $((kb / 1024)) MB"
echo "{\"bench\": \"import\", \"model\": \"gpt2-124M\", \"seconds\": $secs, \"peak_rss_mb\": $((kb / 1024)), \"safetensors_mb\": $mb}" >>"$BENCH_JSONL"

# GPT-2 out: the import as GGUF, decoded by build/infer --bench and by
# llama.cpp's llama-bench (built for this CPU, tests/llamacpp_build.sh) from
# the same file, alternating, at 1 thread and at all of them, each at its own
# defaults otherwise: prefill (llama-bench's pp) of a prompt as long as ours,
# decode (its tg) of as many tokens as ours after it (its depth); then, at
# all threads, the prefill of a 512-token prompt
json_int() {   # FIELD FILE: an integer field of build/infer's one-line JSON
    sed "s/.*\"$1\":\([0-9]*\).*/\1/" "$2"
}
rc=0
long_prompt=$($PY -c 'print(" ".join(["hello world"] * 256))')   # 512 tokens with GPT-2's
llama_bench=$(BUILD=$BUILD NODE_MODULES=$MODULES sh tests/llamacpp_build.sh) || rc=$?
if [ $rc -eq 0 ]; then
    all=${BENCH_DECODE_THREADS:-$(nproc)}
    counts=$( [ "$all" -eq 1 ] && echo 1 || echo "1 $all")
    for pair in f32:fp32 f16:bf16 q8_0:int8; do
        t=${pair%:*} q=${pair#*:}
        "$BUILD/export" --ckpt "$tmp/gpt2.h5" --format gguf --out "$tmp/m.gguf" --type "$t" >/dev/null
        for i in $(seq "$DECODE_RUNS"); do
            OMP_NUM_THREADS=$all "$BUILD/infer" --ckpt "$tmp/m.gguf" --quant "$q" --bench \
                --prompt "$long_prompt" -n 1 >"$tmp/long_ours_${t}_$i.json" ||
                fail "build/infer --bench of a long prompt on the $t file"
            np=$(json_int n_prompt "$tmp/long_ours_${t}_$i.json")
            "$llama_bench" -m "$tmp/m.gguf" -t "$all" -p "$np" -n 0 -r 1 -o json \
                >"$tmp/long_llama_${t}_$i.json" 2>"$tmp/llama.err" ||
                { cat "$tmp/llama.err"; fail "llama-bench of a long prompt on the $t file"; }
            for n in $counts; do
                OMP_NUM_THREADS=$n "$BUILD/infer" --ckpt "$tmp/m.gguf" --quant "$q" --bench \
                    >"$tmp/ours_${t}_${n}_$i.json" || fail "build/infer --bench on the $t file"
                np=$(json_int n_prompt "$tmp/ours_${t}_${n}_$i.json")
                ng=$(json_int n_generated "$tmp/ours_${t}_${n}_$i.json")
                # prefill from an empty context, decode after the prompt, as ours
                for part in pp tg; do
                    args="-p $np -n 0"
                    [ "$part" = tg ] && args="-p 0 -n $ng -d $np"
                    "$llama_bench" -m "$tmp/m.gguf" -t "$n" $args -r 1 -o json \
                        >"$tmp/llama_${t}_${n}_${i}_$part.json" 2>"$tmp/llama.err" ||
                        { cat "$tmp/llama.err"; fail "llama-bench on the $t file"; }
                done
            done
        done
        rm "$tmp/m.gguf"
        $PY - "$t" "$tmp" "$BENCH_JSONL" <<'PY'
import glob, json, statistics, sys
t, tmp, out = sys.argv[1:4]
ours = [json.load(open(f)) for f in sorted(glob.glob("%s/ours_%s_*.json" % (tmp, t)))]
llama = [r for f in sorted(glob.glob("%s/llama_%s_*.json" % (tmp, t))) for r in json.load(open(f))]
row = {"bench": "decode_vs_llamacpp", "model": "gpt2-124M", "gguf_type": t, "quant": ours[0]["quant"],
       "kv": ours[0]["kv"], "llamacpp_kv": llama[0]["type_k"], "n_prompt": ours[0]["n_prompt"],
       "llamacpp": llama[0]["build_commit"]}
for kind, ours_key, llama_test in (("decode", "decode_tokens_per_s", "n_gen"),
                                   ("prefill", "prefill_tokens_per_s", "n_prompt")):
    line = "%-7s gpt2-124M %-4s GGUF, build/infer %-4s / llama-bench, tok/s:" % (kind, t, ours[0]["quant"])
    for n in sorted({r["threads"] for r in ours}):
        a = statistics.median(r[ours_key] for r in ours if r["threads"] == n)
        b = statistics.median(r["avg_ts"] for r in llama if r["n_threads"] == n and r[llama_test] > 0)
        row["runs"] = sum(r["threads"] == n for r in ours)
        row["%s_%dt" % (kind, n)], row["llamacpp_%s_%dt" % (kind, n)] = round(a, 1), round(b, 1)
        line += "  %d thread%s %.1f / %.1f (%.2fx)" % (n, "" if n == 1 else "s", a, b, a / b)
    print(line)
ours = [json.load(open(f)) for f in sorted(glob.glob("%s/long_ours_%s_*.json" % (tmp, t)))]
llama = [r for f in sorted(glob.glob("%s/long_llama_%s_*.json" % (tmp, t))) for r in json.load(open(f))]
a = statistics.median(r["prefill_tokens_per_s"] for r in ours)
b = statistics.median(r["avg_ts"] for r in llama)
n, np_ = ours[0]["threads"], ours[0]["n_prompt"]
row["long_prompt"], row["prefill_long_%dt" % n], row["llamacpp_prefill_long_%dt" % n] = np_, round(a, 1), round(b, 1)
print("prefill gpt2-124M %-4s GGUF, build/infer %-4s / llama-bench, %d-token prompt, %d threads: %.1f / %.1f (%.2fx)"
      % (t, ours[0]["quant"], np_, n, a, b, a / b))
open(out, "a").write(json.dumps(row) + "\n")
PY
    done
elif [ $rc -eq 77 ]; then
    echo "$llama_bench"
else   # a third party's build: its rows are lost, not the rest of make bench
    echo "SKIP decode against llama.cpp: llama-bench could not be built (its log is named above)"
fi

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
