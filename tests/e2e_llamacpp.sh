#!/bin/sh
# llama.cpp itself runs our GGUF files: the prebuilt CPU libraries of the npm
# package node-llama-cpp (make deps installs it into build/npm; nothing is
# compiled) load build/export's f32, f16 and q8_0 files of a small model with
# GPT-2's tokenizer, trained here on a vocabulary padded to 50304 as llm.c pads it,
# and the f32 file of one with a bpe tokenizer of GPT-2's split (prep's default)
# trained on the corpus and cases where the bytes split would cut otherwise:
# llama.cpp tokenizes that whole text into prep's ids.
# For each file, against build/infer on the same file (tests/infer_trace gives
# its token ids and logits; both sides with an fp32 KV cache):
#  - llama.cpp tokenizes the prompt into our ids;
#  - greedy generation (llama.cpp's own sampler at temperature 0): f32 gives our
#    tokens, all of them, and build/infer prints the text llama.cpp detokenizes;
#    f16 and q8_0 at least their first tokens (see below);
#  - teacher forced on a val window: llama.cpp's logits within a bound of ours
#    and its top-1 token ours at (nearly) every position;
#  - on the first val windows, llama.cpp's mean cross-entropy within a bound of
#    build/infer --eval's.
# What llama.cpp computes differently: GELU through an fp16 table (input and
# output rounded to fp16) in every type; f16 matrices multiply fp16-rounded
# activations; q8_0 matrices multiply activations quantized as Q8_0 with fp16
# scales (ours keep fp32 scales).  Also: build/infer --quant int8 on the
# checkpoint and the q8_0 file give the same greedy text, and llama.cpp's own
# llama-completion program, built here from the package's source, prints
# build/infer's greedy text on the f32 file (skipped without cmake or git).
# Skips (exit 77) without node, the package, Debian's numpy or GPT-2's vocabulary,
# or when no prebuilt binary of the package runs on this machine.
set -e
NAME=e2e_llamacpp
. tests/lib_e2e.sh
MODULES=${NODE_MODULES:-build/npm/node_modules}
command -v node >/dev/null 2>&1 || skip "node is not installed"
[ -f "$MODULES/node-llama-cpp/package.json" ] || skip "no node-llama-cpp in $MODULES (make deps)"
$PY -c 'import numpy' 2>/dev/null || skip "needs python3-numpy (make deps)"
need_gpt2_vocab
[ -x "$BUILD/tests/infer_trace" ] || fail "$BUILD/tests/infer_trace is not built (make test builds it)"

"$BUILD/prep" --input "$CORPUS" --out "$tmp/data" --tokenizer gpt2 --vocab-file "$TOKDIR/encoder.json" \
    --merges "$TOKDIR/vocab.bpe" 2>/dev/null || fail "prep --tokenizer gpt2"
cat >"$tmp/cfg.json" <<JSON
{"vocab_size": 50304, "n_positions": 64, "n_embd": 64, "n_layer": 2, "n_head": 4,
 "batch_size": 4, "lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 10, "max_steps": 100,
 "eval_every": 100, "eval_batches": 2, "log_every": 100, "precision": "fp32",
 "status_endpoint": "none", "control_endpoint": "none", "metrics_endpoint": "none",
 "data_dir": "$tmp/data", "out_dir": "$tmp/run"}
JSON
"$BUILD/trainer" --config "$tmp/cfg.json" 2>"$tmp/err" || { cat "$tmp/err"; fail "training failed"; }
ck="$tmp/run/$(cat "$tmp/run/latest")"

PROMPT="The meaning of life is"
N=40
W=8
# compare T FILE DATA PROMPT [TEXTS]: llama.cpp on the GGUF file FILE (of type T, of
# a model trained on DATA) against build/infer, from PROMPT (at most 24 tokens:
# N more fill the context) and on DATA's first val windows (n_positions = 64
# tokens); with TEXTS, the file prep made DATA of: llama.cpp's ids of it must be
# prep's
compare() {
    t=$1 g=$2 data=$3 prompt=$4 texts=$5
    o=${g%.gguf}
    q=fp32
    [ "$t" = q8_0 ] && q=int8
    $PY -c '
import struct, sys
d = open(sys.argv[1], "rb").read()
w, n = struct.unpack_from("<I", d, 12)[0], struct.unpack_from("<Q", d, 16)[0]
print(*struct.unpack_from("<%d%s" % (64, "H" if w == 2 else "I"), d, 32))' "$data/val.tok" >"$o.ids"
    "$BUILD/tests/infer_trace" "$g" $q fp32 gen "$prompt" $N >"$o.ours.json" || fail "infer_trace gen $t"
    "$BUILD/tests/infer_trace" "$g" $q fp32 logits "$o.ids" "$o.ours.f32" || fail "infer_trace logits $t"
    set -- "$MODULES" "$g" "$prompt" $N "$o.ids" "$o.llama.f32" "$o.llama.txt" "$data/val.tok" $W
    [ -z "$texts" ] || set -- "$@" "$texts" "$o.llama_texts.ids"
    rc=0
    node tests/llamacpp_run.mjs "$@" >"$o.llama.json" 2>"$tmp/err" || rc=$?
    [ $rc -eq 77 ] && skip "$(sed -n 's/^SKIP e2e_llamacpp: //p' "$o.llama.json")"
    [ $rc -eq 0 ] || { cat "$o.llama.json" "$tmp/err"; fail "llama.cpp could not run the $t file"; }
    "$BUILD/infer" --ckpt "$g" --quant $q --kv fp32 --prompt "$prompt" -n $N --temperature 0 \
        --ignore-eos >"$o.infer.txt" 2>/dev/null || fail "infer on the $t file"
    "$BUILD/infer" --ckpt "$g" --quant $q --kv fp32 --eval "$data/val.tok" --eval-windows $W \
        >"$o.eval.json" || fail "infer --eval on the $t file"
    $PY tests/llamacpp_compare.py "$t" "$o.ours.json" "$o.llama.json" "$o.ids" "$o.ours.f32" \
        "$o.llama.f32" "$o.eval.json" || fail "llama.cpp and build/infer differ on the $t file"
    if [ "$t" = f32 ]; then
        [ "$(cat "$o.infer.txt")" = "$(cat "$o.llama.txt")" ] ||
            { cat "$o.infer.txt"; echo; cat "$o.llama.txt"; echo; fail "build/infer's text differs"; }
        echo "f32: build/infer prints the text llama.cpp generates and detokenizes"
    fi
    if [ -n "$texts" ]; then
        dump_tokens "$data" >"$o.prep.ids"
        cmp "$o.prep.ids" "$o.llama_texts.ids" >/dev/null ||
            fail "llama.cpp's ids of $texts differ from prep's: $(cmp "$o.prep.ids" "$o.llama_texts.ids")"
        echo "llama.cpp tokenizes the $(wc -c <"$texts") bytes of text into prep's $(wc -l <"$o.prep.ids") ids"
    fi
}
for t in f32 f16 q8_0; do
    "$BUILD/export" --ckpt "$ck" --format gguf --out "$tmp/m_$t.gguf" --type "$t" >/dev/null ||
        fail "export $t"
    compare $t "$tmp/m_$t.gguf" "$tmp/data" "$PROMPT"
done

# bpe of GPT-2's split: the valid UTF-8 lines of the corpus and cases of
# everything GPT-2's pattern tells apart (where the bytes split cuts otherwise:
# non-ASCII letters, digits, blanks and symbols, runs past 256 bytes)
$PY - "$CORPUS" "$tmp/texts.txt" <<'PY'
import os, sys
src, out = sys.argv[1:]
paths = sorted(os.path.join(src, f) for f in os.listdir(src)) if os.path.isdir(src) else [src]
lines = []
for p in paths:
    if os.path.isfile(p) and not p.endswith((".dat", ".u8")):
        for line in open(p, "rb").read().splitlines(keepends=True):
            try:
                lines.append(line.decode("utf-8"))
            except UnicodeDecodeError:
                pass
cases = ["It's a dog's life; they're here, we've won, I'm done, you'll see, he'd go. DON'T 'S\n",
         "Z\u00fcrich, caf\u00e9, \u00c5ngstr\u00f6m, \u0130stanbul \u2014 \u00bfqu\u00e9? \u00a1s\u00ed!\n",
         "\u6771\u4eac\u306f\u65e5\u672c\u306e\u9996\u90fd\u3067\u3059\u3002\u5317\u4eac\u3002 \ud55c\uad6d\uc5b4\n",
         "x!\U0001F600?\u00bf 12\u0663\u0664 \u2167 a\u00a0\u00a0b\u3000\u3000c \U0001F469\U0001F3FD\u200d\U0001F4BB\n",
         "tabs\tand\t mixed\t  blanks   \t\n\n\n   leading\n\r\n\u000b\u000c end\n",
         "=" * 300 + "\n", "\u6f22" * 200 + "\n", "ab" * 150 + " " + "7" * 280 + "\n"]
open(out, "w", encoding="utf-8").write("".join(lines[:20000] + cases * 200))
PY
"$BUILD/prep" --input "$tmp/texts.txt" --out "$tmp/bpe" --tokenizer bpe --vocab 2048 2>/dev/null ||
    fail "prep --tokenizer bpe"
sed -e 's/"vocab_size": 50304/"vocab_size": 2048/' -e 's/"max_steps": 100/"max_steps": 60/' \
    -e "s|$tmp/data|$tmp/bpe|" -e "s|$tmp/run|$tmp/bpe_run|" "$tmp/cfg.json" >"$tmp/bpe.json"
"$BUILD/trainer" --config "$tmp/bpe.json" 2>"$tmp/err" || { cat "$tmp/err"; fail "training on bpe failed"; }
"$BUILD/export" --ckpt "$tmp/bpe_run/$(cat "$tmp/bpe_run/latest")" --format gguf --out "$tmp/bpe.gguf" \
    >/dev/null || fail "export of the bpe model"
compare f32 "$tmp/bpe.gguf" "$tmp/bpe" "café 東京。x!😀?¿ a b" "$tmp/texts.txt"

# llama-completion, the program llama.cpp's users run a GGUF file with (the
# README's command), built for this CPU from the package's source (a few
# minutes the first time): greedy on the f32 file it prints build/infer's text
rc=0
completion=$(BUILD=$BUILD NODE_MODULES=$MODULES sh tests/llamacpp_build.sh llama-completion) || rc=$?
if [ $rc -eq 77 ]; then
    echo "$completion"
elif [ $rc -ne 0 ]; then
    fail "llama-completion could not be built (its log is named above)"
else
    "$completion" -m "$tmp/m_f32.gguf" -no-cnv -p "$PROMPT" -n $N --temp 0 --ignore-eos -t 2 \
        </dev/null >"$tmp/completion.txt" 2>"$tmp/completion.err" ||
        { tail -5 "$tmp/completion.err"; fail "llama-completion could not run the f32 file"; }
    [ "$(cat "$tmp/completion.txt")" = "$(cat "$tmp/m_f32.infer.txt")" ] ||
        { cat "$tmp/completion.txt"; echo; cat "$tmp/m_f32.infer.txt"; echo
          fail "llama-completion's greedy text differs from build/infer's"; }
    echo "llama-completion (greedy, f32 file) prints build/infer's text"
fi
$PY -c 'import json, sys; o = json.load(open(sys.argv[1]))
print("llama.cpp: %s %s through node-llama-cpp, %s" % (o["release"]["repo"], o["release"]["release"], o["system_info"].strip()))' \
    "$tmp/m_f32.llama.json"

# the checkpoint's int8 run is the q8_0 file's: the token embedding is the
# LM head's Q8_0 rows in both
a=$("$BUILD/infer" --ckpt "$ck" --quant int8 --prompt "$PROMPT" -n $N --temperature 0 --ignore-eos 2>/dev/null) ||
    fail "infer int8 on the checkpoint"
b=$("$BUILD/infer" --ckpt "$tmp/m_q8_0.gguf" --prompt "$PROMPT" -n $N --temperature 0 --ignore-eos 2>/dev/null) ||
    fail "infer on the q8_0 file"
[ "$a" = "$b" ] || { printf '%s\n---\n%s\n' "$a" "$b"; fail "int8 from the checkpoint and the q8_0 file differ"; }
echo "int8: the checkpoint and its q8_0 GGUF generate the same greedy text"
echo "PASS e2e_llamacpp"
