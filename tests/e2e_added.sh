#!/bin/sh
# End to end: GPT-2 with added tokens (Hugging Face's added_tokens) in and out,
# against Hugging Face's own tokenizers library (the Rust code transformers runs,
# npm tokenizers through its Node binding; its JS port too).
# The source folder: a random GPT-2 (tests/hf_gpt2.py) of 50261 rows whose
# tokenizer.json (made here from the fixture's GPT-2 vocabulary and merges) adds
# <|endoftext|> (50256, as GPT-2's own), <|im_start|>, <|im_end|>, <|pad|>
# (special) and " gpt-cpu" (an added word, not special, with a space).
#  - prep --tokenizer gpt2 --hf SRC encodes texts with markers (next to words and
#    blanks, repeated, partial: "<|im_sta"), <|endoftext|> and the added word, and
#    the ids equal Hugging Face's for SRC's tokenizer.json, token for token;
#  - import of SRC (refused when config.json's vocab_size has no room for the
#    added tokens), and trainer --init-from on that dataset runs; a dataset of
#    GPT-2's files (no added tokens) is refused, naming both;
#  - the hf export of the checkpoint gives the same ids in Hugging Face's
#    library, and imports back (vocab.json + merges.txt + tokenizer_config.json,
#    or tokenizer.json alone) into the same /tokenizer;
#  - the GGUF export's tokenizer.ggml.token_type is 3 (CONTROL) for the special
#    ones, 4 (USER_DEFINED) for the added word, 1 otherwise, the added tokens named
#    by their text; infer reads them back from it: a prompt with markers is as
#    many tokens from the GGUF as from the checkpoint, and as Hugging Face's;
#  - llama.cpp (node-llama-cpp's prebuilt library) tokenizes the texts with the
#    GGUF file, special parsing on, into our ids (skipped where it cannot run).
# The test can fail: without added tokens the markers are many ids each.
# Skips (exit 77) without node, the Rust library's binding, python's ML
# packages or GPT-2's vocabulary (make deps).
set -e
NAME=e2e_added
. tests/lib_e2e.sh
need_python_ml
need_gpt2_vocab
command -v node >/dev/null 2>&1 || skip "node is not installed"
impls=
for p in "${HF_TOKENIZERS_RUST:-build/npm/node_modules/tokenizers}" \
         "${HF_TOKENIZERS:-build/npm/node_modules/@huggingface/tokenizers}"; do
    [ -f "$p/package.json" ] && node -e "require('$(cd "$p" && pwd)')" 2>/dev/null &&
        impls="$impls $(cd "$p" && pwd)"
done
rust=$(echo $impls | tr ' ' '\n' | grep 'node_modules/tokenizers$') ||
    skip "no npm tokenizers with its binary (make deps)"

src=$tmp/src
$PY tests/hf_gpt2.py make "$src" --tokenizer-dir "$TOKDIR" --dims 50261,16,32,1,2 >/dev/null
# SRC as a fast tokenizer saves it: tokenizer.json (GPT-2's, plus the added tokens,
# with transformers' flags) and tokenizer_config.json; no vocab.json or merges.txt
$PY - "$src" <<'PY'
import json, os, sys
d = sys.argv[1]
vocab = json.load(open(f"{d}/vocab.json"))
merges = [l for l in open(f"{d}/merges.txt", encoding="utf-8").read().split("\n")[1:] if l]
def tok(i, content, special, normalized):
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": normalized, "special": special}
added = [tok(50256, "<|endoftext|>", True, True), tok(50257, "<|im_start|>", True, False),
         tok(50258, "<|im_end|>", True, False), tok(50259, "<|pad|>", True, False),
         tok(50260, " gpt-cpu", False, True)]
bl = lambda p, t: {"type": "ByteLevel", "add_prefix_space": p, "trim_offsets": t, "use_regex": True}
json.dump({"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
           "normalizer": None, "pre_tokenizer": bl(False, True), "post_processor": bl(True, False),
           "decoder": bl(True, True),
           "model": {"type": "BPE", "dropout": None, "unk_token": None,
                     "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
                     "vocab": vocab, "merges": merges}}, open(f"{d}/tokenizer.json", "w"))
json.dump({"tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>",
           "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|pad|>",
           "added_tokens_decoder": {str(t["id"]): {k: v for k, v in t.items() if k != "id"}
                                    for t in added}}, open(f"{d}/tokenizer_config.json", "w"))
os.remove(f"{d}/vocab.json")
os.remove(f"{d}/merges.txt")
PY

cat >"$tmp/cases.txt" <<'EOF'
<|im_start|>system
You are helpful.<|im_end|>
<|im_start|>user
Hi there!<|im_end|><|im_start|>assistant
 Hello<|im_end|>
word<|im_start|>word <|im_end|> word  <|im_start|>  x<|im_end|>
<|im_sta <|im_start <|im_end| |im_end|> <|<|im_end|>|> <|im_start|><|im_start|>
a<|endoftext|>b <|endoftext|> <|endoftext|><|endoftext|>
<|pad|><|pad|>padded <|pad|>
I like gpt-cpu, gpt-cpu and  gpt-cpu; gpt-cpus too.
EOF
# and GPT-2's own cases: prose, code, accents, CJK, emoji (the valid UTF-8 lines)
$PY - tests/data/gpt2_mixed.txt "$tmp/mixed.txt" <<'PY'
import sys
out = []
for line in open(sys.argv[1], "rb").read().splitlines(keepends=True):
    try:
        line.decode("utf-8")
        out.append(line)
    except UnicodeDecodeError:
        pass
open(sys.argv[2], "wb").write(b"".join(out))
PY

# hf_check DIR IDS IMPL...: each implementation gives our ids for the texts with DIR's
# tokenizer
hf_check() {
    dir=$1 ids=$2
    shift 2
    for impl in "$@"; do
        node tests/hf_tokenizer_check.cjs "$impl" "$dir" "$ids" "$tmp/cases.txt" "$tmp/mixed.txt" ||
            fail "Hugging Face's tokenizer ($impl) of $dir differs from ours"
    done
}
"$BUILD/prep" --tokenizer gpt2 --hf "$src" --input "$tmp/cases.txt" "$tmp/mixed.txt" \
    --out "$tmp/data" --val-fraction 0.5 2>"$tmp/err" || { cat "$tmp/err"; fail "prep --hf"; }
dump_tokens "$tmp/data" >"$tmp/ids"
for id in 50256 50257 50258 50259 50260; do
    grep -qx "$id" "$tmp/ids" || fail "prep's ids have no $id"
done
hf_check "$src" "$tmp/ids" $rust

# import, and fine-tuning on that dataset; GPT-2's own tokenizer is another one
"$BUILD/import" --hf "$src" --out "$tmp/ck.h5" >/dev/null || fail "import"
# the added tokens count in the vocabulary config.json's vocab_size must hold
cp -r "$src" "$tmp/small"
sed -i 's/"vocab_size": 50261/"vocab_size": 50260/' "$tmp/small/config.json"
if "$BUILD/import" --hf "$tmp/small" --out "$tmp/small.h5" 2>"$tmp/err"; then
    fail "import of 50261 tokens into vocab_size 50260 succeeded"
fi
grep -q "the vocabulary has 50261 tokens, more than config.json's vocab_size 50260" "$tmp/err" ||
    { cat "$tmp/err"; fail "wrong refusal of a vocab_size without room for the added tokens"; }
cat >"$tmp/ft.json" <<JSON
{"batch_size": 2, "seq_len": 16, "lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 1, "max_steps": 2,
 "eval_every": 0, "log_every": 100, "precision": "fp32", "status_endpoint": "none",
 "control_endpoint": "none", "metrics_endpoint": "none", "data_dir": "$tmp/data"}
JSON
"$BUILD/trainer" --config "$tmp/ft.json" --init-from "$tmp/ck.h5" --set out_dir="$tmp/run" \
    >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; fail "trainer --init-from on prep --hf's data"; }
"$BUILD/prep" --tokenizer gpt2 --vocab-file "$TOKDIR/encoder.json" --merges "$TOKDIR/vocab.bpe" \
    --input "$tmp/cases.txt" --out "$tmp/plain" 2>/dev/null || fail "prep of GPT-2's files"
if "$BUILD/trainer" --config "$tmp/ft.json" --init-from "$tmp/ck.h5" --set data_dir="$tmp/plain" \
    --set out_dir="$tmp/bad" >/dev/null 2>"$tmp/err"; then fail "data without the added tokens was accepted"; fi
grep -q "ck.h5 holds a gpt2 tokenizer of 50261 tokens and .*plain/tokenizer.json a different gpt2 one of 50257" \
    "$tmp/err" || { cat "$tmp/err"; fail "wrong refusal of GPT-2's own tokenizer"; }
echo "e2e_added: trainer --init-from takes prep --hf's data, refuses GPT-2's own"

# the hf export: Hugging Face's ids again, and back through import either way
"$BUILD/export" --ckpt "$tmp/ck.h5" --format hf --out "$tmp/ck.hf" >/dev/null || fail "export hf"
hf_check "$tmp/ck.hf" "$tmp/ids" $impls
"$BUILD/import" --hf "$tmp/ck.hf" --out "$tmp/slow.h5" >/dev/null || fail "import of the export (vocab.json)"
rm "$tmp/ck.hf/vocab.json" "$tmp/ck.hf/merges.txt"
"$BUILD/import" --hf "$tmp/ck.hf" --out "$tmp/fast.h5" >/dev/null || fail "import of the export (tokenizer.json)"
for f in slow fast; do
    h5diff "$tmp/ck.h5" "$tmp/$f.h5" /tokenizer /tokenizer >/dev/null ||
        fail "the export imported back ($f) has another /tokenizer"
done
echo "e2e_added: the hf export imports back to the same /tokenizer (vocab.json, tokenizer.json)"

# GGUF: token types and texts, and infer reads the added tokens back
"$BUILD/export" --ckpt "$tmp/ck.h5" --format gguf --out "$tmp/ck.gguf" >/dev/null || fail "export gguf"
$PY - "$tmp/ck.gguf" <<'PY' || fail "the GGUF's token types"
import sys
sys.path.insert(0, "tests")
from gguf_check import Reader
r = Reader(sys.argv[1])
tokens = r.kv["tokenizer.ggml.tokens"][1][1]
types = list(r.kv["tokenizer.ggml.token_type"][1][1])
want = {50256: 3, 50257: 3, 50258: 3, 50259: 3, 50260: 4}
bad = [i for i, t in enumerate(types) if t != want.get(i, 1)]
assert len(types) == 50261 and not bad, "types differ at %s" % bad[:5]
names = [t.decode() if isinstance(t, bytes) else t for t in tokens[50256:]]
assert names == ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>", " gpt-cpu"], names
print("e2e_added: GGUF token_type 3 for the 4 special tokens, 4 for ' gpt-cpu', 1 for the rest")
PY
prompt='<|im_start|>user
 gpt-cpu<|im_end|>'
n_prompt() {
    "$BUILD/infer" --ckpt "$1" --bench --prompt "$prompt" 2>"$tmp/err" |
        grep -o '"n_prompt":[0-9]*' | grep -o '[0-9]*$' || { cat "$tmp/err"; fail "infer --ckpt $1"; }
}
printf '%s' "$prompt" >"$tmp/prompt.txt"
"$BUILD/prep" --tokenizer gpt2 --hf "$src" --input "$tmp/prompt.txt" "$tmp/prompt.txt" \
    --out "$tmp/p" 2>/dev/null || fail "prep of the prompt"
want=$(( ($(dump_tokens "$tmp/p" | wc -l) - 1) / 2 ))   # two copies and one <|endoftext|>
[ "$want" -eq 5 ] || fail "the prompt is $want tokens, not 5"
for f in ck.h5 ck.gguf; do
    got=$(n_prompt "$tmp/$f")
    [ "$got" = "$want" ] || fail "infer --ckpt $f: the prompt is $got tokens, not $want"
done
echo "e2e_added: infer reads the prompt with markers as $want tokens from the checkpoint and the GGUF"

# llama.cpp (node-llama-cpp's prebuilt library) tokenizes the texts in the GGUF
# file, special parsing on, as we do: the texts as one file, our ids from prep
cat "$tmp/cases.txt" "$tmp/mixed.txt" >"$tmp/all.txt"
"$BUILD/prep" --tokenizer gpt2 --hf "$src" --input "$tmp/all.txt" --out "$tmp/all" \
    --val-fraction 0.5 2>/dev/null || fail "prep of the texts as one file"
dump_tokens "$tmp/all" >"$tmp/all.ids"
llama_ids_match "$tmp/ck.gguf" "$tmp/all.txt" "$tmp/all.ids" &&
    echo "e2e_added: llama.cpp gives our $(wc -l <"$tmp/all.ids") ids for the GGUF file (special parsing on)"
echo "e2e_added: PASS"
