#!/bin/sh
# build/export to a Hugging Face folder and to GGUF:
#  - hf: a trained checkpoint's export, read by name from model.safetensors with
#    numpy into the plain PyTorch GPT-2 forward (tests/hf_gpt2.py), gives the
#    trainer's own eval loss within 1e-5 relative, in f32 (f16 and bf16 load too);
#    an imported GPT-2 exported and imported again is the same /model bit for bit;
#    tokenizer_config.json and generation_config.json name <|endoftext|> (50256)
#    for GPT-2's tokenizer, and no special token for the byte one (their ids:
#    tests/e2e_hftok.sh);
#  - gguf: an independent reader, the npm package @huggingface/gguf (installed
#    here where the npm registry answers), lists exactly the metadata keys and
#    tensor infos llama.cpp's gpt2 loader wants; a numpy reader dequantizes the
#    Q8_0 tensors and matches infer's own int8 weights (--save-quantized) exactly,
#    and the F16 ones match the checkpoint within fp16 rounding;
#  - greedy generation from the f32 GGUF equals the checkpoint's, and from the
#    q8_0 one the checkpoint's int8 run's, whose --eval figures it gives too (the
#    token embedding is the LM head's Q8_0 rows in both);
#  - an unwritable output path, a checkpoint without a tokenizer or with /config
#    dimensions past the trainer's limits or past /model's shapes, a tokenizer
#    larger than the model or with two tokens of the same bytes (hf), NaN weights,
#    weights past q8_0's range (q8_0), an unknown --type or --format, --type q8_0
#    or both --type and --dtype with hf, and --dtype with gguf are refused with
#    one line, nothing left under the output name or beside it; --type names
#    hf's dtype too (DESIGN.md's command line); an existing output name (the checkpoint itself
#    too) is refused, the file unchanged; a truncated GGUF file is refused naming
#    it once; the temporary folder of a killed hf export is removed by the next one;
#  - --help describes every flag.
set -e
NAME=e2e_export
. tests/lib_e2e.sh
need_python_ml

# a small byte-level model, trained enough that greedy text is not degenerate
prep_bytes "$tmp/data"
cat > "$tmp/cfg.json" <<JSON
{"vocab_size": 256, "n_positions": 64, "n_embd": 64, "n_layer": 2, "n_head": 4,
 "batch_size": 8, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 5, "max_steps": 400,
 "eval_every": 400, "eval_batches": 10, "log_every": 100, "precision": "fp32",
 "status_endpoint": "none", "control_endpoint": "none", "metrics_endpoint": "none",
 "data_dir": "$tmp/data", "out_dir": "$tmp/run"}
JSON
"$BUILD/trainer" --config "$tmp/cfg.json" 2>"$tmp/err" || { cat "$tmp/err"; fail "training failed"; }
ck="$tmp/run/$(cat "$tmp/run/latest")"
val=$($PY -c 'import json,sys; print([r["val_loss"] for r in map(json.loads, open(sys.argv[1])) if r["type"] == "eval"][-1])' "$tmp/run/log.jsonl")

# ---- Hugging Face folder --------------------------------------------------------------
for dt in f32 f16 bf16; do
    "$BUILD/export" --ckpt "$ck" --format hf --out "$tmp/hf_$dt" --dtype "$dt" >/dev/null || fail "export hf $dt"
    for f in config.json model.safetensors vocab.json merges.txt; do
        [ -s "$tmp/hf_$dt/$f" ] || fail "hf $dt: no $f"
    done
    theirs=$($PY tests/hf_gpt2.py loss "$tmp/hf_$dt" --tokens "$tmp/data/val.tok" --seq-len 64 --windows 80) ||
        fail "PyTorch could not run the $dt export"
    $PY -c '
import json, sys
a, b, dt = float(sys.argv[1]), json.loads(sys.argv[2])["loss"], sys.argv[3]
rel = abs(a - b) / a
tol = 1e-5 if dt == "f32" else 1e-2
print("hf %s: trainer val loss %.6f, PyTorch on the export %.6f (relative %.1e)" % (dt, a, b, rel))
sys.exit(0 if rel <= tol else 1)' "$val" "$theirs" "$dt" || fail "hf $dt: loss differs"
done
# DESIGN.md's command line gives both formats --type: for hf it is --dtype
"$BUILD/export" --ckpt "$ck" --format hf --out "$tmp/hf_type_f16" --type f16 >/dev/null ||
    fail "export hf --type f16"
cmp -s "$tmp/hf_f16/model.safetensors" "$tmp/hf_type_f16/model.safetensors" ||
    fail "hf --type f16 differs from --dtype f16"
no_temp() {   # what an export leaves beside its output is only the output
    left=$(ls "$tmp" | grep '\.tmp' || true)
    [ -z "$left" ] || fail "left $left: $1"
}
# a folder named with a trailing slash is that folder (not a folder inside it)
"$BUILD/export" --ckpt "$ck" --format hf --out "$tmp/slash/" >/dev/null || fail "export hf to DIR/"
cmp "$tmp/slash/model.safetensors" "$tmp/hf_f32/model.safetensors" || fail "DIR/ holds another model"
no_temp "export hf to DIR/"
# the temporary folder of a killed export is removed by the next one, which
# says so in one line; a live export's (its lock held) and other names stay
mkdir "$tmp/again.tmp" "$tmp/again.tmp-a1b2c3" "$tmp/again.tmp-live01"
printf x >"$tmp/again.tmp-a1b2c3/model.safetensors.tmp"
hold_lock "$tmp/again.tmp-live01"
"$BUILD/export" --ckpt "$ck" --format hf --out "$tmp/again" >/dev/null 2>"$tmp/log" ||
    fail "export beside a killed one's folder: $(cat "$tmp/log")"
cmp "$tmp/again/model.safetensors" "$tmp/hf_f32/model.safetensors" || fail "again holds another model"
[ "$(cat "$tmp/log")" = "export: removed $tmp/again.tmp-a1b2c3: left by an interrupted write of $tmp/again" ] ||
    fail "export beside a killed one's folder said: $(cat "$tmp/log")"
[ -d "$tmp/again.tmp" ] && [ -d "$tmp/again.tmp-live01" ] || fail "export removed a folder not a dead export's"
kill "$holder"
rmdir "$tmp/again.tmp" "$tmp/again.tmp-live01"
$PY - "$tmp/hf_f32" <<'EOF' || fail "hf config.json"
import json, sys
c = json.load(open(sys.argv[1] + "/config.json"))
want = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 256, "n_positions": 64,
        "n_ctx": 64, "n_embd": 64, "n_layer": 2, "n_head": 4, "layer_norm_epsilon": 1e-5,
        "activation_function": "gelu_new", "tie_word_embeddings": True,
        "bos_token_id": None, "eos_token_id": None}   # absent: GPT2Config's 50256
bad = {k: (c.get(k, "absent"), v) for k, v in want.items() if c.get(k, "absent") != v}
assert not bad, bad
v = json.load(open(sys.argv[1] + "/vocab.json"))
assert len(v) == 256 and sorted(v.values()) == list(range(256)) and v["!"] == 33 and v["\u0120"] == 32, len(v)
# no end-of-text token anywhere, so that transformers invents none
t = json.load(open(sys.argv[1] + "/tokenizer_config.json"))
want = {"tokenizer_class": "GPT2Tokenizer", "model_max_length": 64, "bos_token": None,
        "eos_token": None, "unk_token": None, "added_tokens_decoder": {}}
bad = {k: (t.get(k, "absent"), v) for k, v in want.items() if t.get(k, "absent") != v}
assert not bad, bad
assert json.load(open(sys.argv[1] + "/generation_config.json")) == {"_from_model_config": True}
EOF

if [ -f "$TOKDIR/encoder.json" ] && [ -f "$TOKDIR/vocab.bpe" ]; then
    $PY tests/hf_gpt2.py make "$tmp/gpt2" --tokenizer-dir "$TOKDIR" --dims 50257,64,64,2,4
    "$BUILD/import" --hf "$tmp/gpt2" --out "$tmp/gpt2.h5" >/dev/null || fail "import"
    "$BUILD/export" --ckpt "$tmp/gpt2.h5" --format hf --out "$tmp/gpt2_back" >/dev/null || fail "export of an import"
    cmp "$tmp/gpt2/vocab.json" "$tmp/gpt2_back/vocab.json" >/dev/null 2>&1 ||
        $PY -c 'import json,sys; assert json.load(open(sys.argv[1])) == json.load(open(sys.argv[2]))' \
            "$tmp/gpt2/vocab.json" "$tmp/gpt2_back/vocab.json" || fail "vocab.json differs from GPT-2's"
    diff "$tmp/gpt2/merges.txt" "$tmp/gpt2_back/merges.txt" >/dev/null || fail "merges.txt differs from GPT-2's"
    $PY - "$tmp/gpt2_back" <<'EOF' || fail "hf: GPT-2's special token"
import json, sys
d = sys.argv[1]
t, g = json.load(open(d + "/tokenizer_config.json")), json.load(open(d + "/generation_config.json"))
eot = {"content": "<|endoftext|>", "single_word": False, "lstrip": False, "rstrip": False,
       "normalized": True, "special": True}
assert [t[k] for k in ("bos_token", "eos_token", "unk_token")] == ["<|endoftext|>"] * 3, t
assert t["added_tokens_decoder"] == {"50256": eot}, t["added_tokens_decoder"]
assert json.load(open(d + "/tokenizer.json"))["added_tokens"] == [dict(id=50256, **eot)]
assert g == {"_from_model_config": True, "bos_token_id": 50256, "eos_token_id": 50256}, g
EOF
    "$BUILD/import" --hf "$tmp/gpt2_back" --out "$tmp/again.h5" >/dev/null || fail "import of the export"
    h5diff "$tmp/gpt2.h5" "$tmp/again.h5" /model /model >/dev/null || fail "re-imported /model differs"
    echo "hf: import -> export -> import gives /model bit for bit, GPT-2's vocab.json and merges.txt"
else
    skip_part "GPT-2 round trip" "no GPT-2 vocabulary in $TOKDIR (make deps)"
fi

# ---- GGUF ------------------------------------------------------------------------------
for t in f32 f16 q8_0; do
    "$BUILD/export" --ckpt "$ck" --format gguf --out "$tmp/m_$t.gguf" --type "$t" >/dev/null || fail "export gguf $t"
    ls -l "$tmp/m_$t.gguf" | awk -v t="$t" '{print "gguf " t ": " $5 " bytes"}'
done
"$BUILD/infer" --ckpt "$ck" --quant int8 --save-quantized "$tmp/q8.h5" >/dev/null 2>&1 || fail "--save-quantized"
$PY tests/gguf_check.py --ckpt "$ck" --q8 "$tmp/q8.h5" "$tmp/m_f32.gguf" "$tmp/m_f16.gguf" "$tmp/m_q8_0.gguf" ||
    fail "the GGUF files are not what the checkpoint holds"

if command -v npm >/dev/null && npm install --silent --prefix "$tmp/npm" @huggingface/gguf >/dev/null 2>&1; then
    for t in f32 q8_0; do
        NODE_PATH="$tmp/npm/node_modules" node tests/gguf_list.cjs "$tmp/m_$t.gguf" >"$tmp/npm_$t.json" ||
            fail "@huggingface/gguf could not read the $t file"
        $PY tests/gguf_check.py --compare-listing "$tmp/npm_$t.json" "$tmp/m_$t.gguf" ||
            fail "@huggingface/gguf lists other metadata or tensors for $t"
    done
else
    skip_part @huggingface/gguf "npm or the registry is not reachable"
fi

a=$("$BUILD/infer" --ckpt "$ck" --quant fp32 --prompt "The " -n 60 --temperature 0 2>/dev/null) || fail "infer fp32"
b=$("$BUILD/infer" --ckpt "$tmp/m_f32.gguf" --quant fp32 --prompt "The " -n 60 --temperature 0 2>/dev/null) ||
    fail "infer of the f32 GGUF"
[ "$a" = "$b" ] || { printf '%s\n---\n%s\n' "$a" "$b"; fail "greedy text from the f32 GGUF differs"; }
echo "greedy generation: the f32 GGUF gives the checkpoint's text"
# q8_0: the matrices and the LM head are the int8 run's (gguf_check above), and
# the token embedding is the LM head's rows in both, so the runs are the same
a=$("$BUILD/infer" --ckpt "$ck" --quant int8 --prompt "The " -n 60 --temperature 0 2>/dev/null) || fail "infer int8"
b=$("$BUILD/infer" --ckpt "$tmp/m_q8_0.gguf" --quant int8 --prompt "The " -n 60 --temperature 0 2>/dev/null) ||
    fail "infer of the q8_0 GGUF"
[ "$a" = "$b" ] || { printf '%s\n---\n%s\n' "$a" "$b"; fail "greedy text from the q8_0 GGUF differs from int8's"; }
"$BUILD/infer" --ckpt "$ck" --quant int8 --eval "$tmp/data/val.tok" --eval-windows 80 >"$tmp/e1" || fail "eval int8"
"$BUILD/infer" --ckpt "$tmp/m_q8_0.gguf" --quant int8 --eval "$tmp/data/val.tok" --eval-windows 80 >"$tmp/e2" ||
    fail "eval of the q8_0 GGUF"
# (their fp32 references differ: the q8_0 file's is its dequantized weights)
$PY -c '
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
print("q8_0 GGUF: the greedy text and eval loss %.6f, accuracy %.4f of the checkpoint int8 (%.6f, %.4f)"
      % (b["loss"], b["accuracy"], a["loss"], a["accuracy"]))
sys.exit(0 if (a["loss"], a["accuracy"]) == (b["loss"], b["accuracy"]) else 1)' "$tmp/e1" "$tmp/e2" ||
    fail "the q8_0 GGUF evaluates unlike the checkpoint int8"

# a truncated GGUF file: exit 1, one line that names the file once
head -c 20000 "$tmp/m_f32.gguf" >"$tmp/cut.gguf"
rc=0; "$BUILD/infer" --ckpt "$tmp/cut.gguf" -n 1 >/dev/null 2>"$tmp/err" || rc=$?
[ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "past the end of the file" "$tmp/err" &&
    [ "$(grep -oF "$tmp/cut.gguf" "$tmp/err" | wc -l)" -eq 1 ] || { cat "$tmp/err"; fail "truncated GGUF: exit $rc"; }
echo "truncated GGUF refused: $(cat "$tmp/err")"

# ---- refusals -------------------------------------------------------------------------
refuse() {   # expected exit code, expected text, export arguments...
    code=$1; want=$2; shift 2
    rc=0; "$BUILD/export" "$@" >/dev/null 2>"$tmp/err" || rc=$?
    [ "$rc" -eq "$code" ] || { cat "$tmp/err"; fail "exit $rc, not $code: $*"; }
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || { cat "$tmp/err"; fail "not one line: $*"; }
    grep -q -- "$want" "$tmp/err" || { cat "$tmp/err"; fail "wanted '$want': $*"; }
    no_temp "$*"
    echo "refused: $(cat "$tmp/err")"
}
refuse 2 "is not one of f32, f16, q8_0" --ckpt "$ck" --format gguf --out "$tmp/x.gguf" --type q4_0
refuse 2 "--format onnx is not one of hf, gguf" --ckpt "$ck" --format onnx --out "$tmp/x.gguf"
refuse 2 "--type q8_0 is not one of f32, f16, bf16 for --format hf" --ckpt "$ck" --format hf --out "$tmp/x" --type q8_0
refuse 2 "give --dtype or --type, not both" --ckpt "$ck" --format hf --out "$tmp/x" --type f16 --dtype f16
refuse 2 "--dtype applies to --format hf only" --ckpt "$ck" --format gguf --out "$tmp/x.gguf" --dtype f16
[ ! -e "$tmp/x" ] || fail "left x"
[ ! -e "$tmp/x.gguf" ] || fail "left x.gguf"
mkdir "$tmp/ro"
if [ "$(id -u)" -ne 0 ]; then
    chmod a-w "$tmp/ro"
    refuse 1 "Permission denied" --ckpt "$ck" --format gguf --out "$tmp/ro/x.gguf"
else
    refuse 1 "x.gguf: cannot create: the directory $tmp/missing does not exist" --ckpt "$ck" --format gguf --out "$tmp/missing/x.gguf"
fi
cp "$ck" "$tmp/notok.h5"
$PY -c 'import h5py, sys; f = h5py.File(sys.argv[1], "r+"); del f["tokenizer"]' "$tmp/notok.h5"
refuse 1 "/tokenizer" --ckpt "$tmp/notok.h5" --format hf --out "$tmp/notok"
[ ! -e "$tmp/notok" ] || fail "left a folder for a checkpoint without a tokenizer"
# /config allows each dimension up to 2^30; past the trainer's limits the tensor
# list built from them overflowed (n_layer 2^30 crashed export)
cp "$ck" "$tmp/huge.h5"
$PY -c 'import h5py, numpy, sys
f = h5py.File(sys.argv[1], "r+"); f["config"].attrs["n_layer"] = numpy.int64(1 << 30)' "$tmp/huge.h5"
for f in hf gguf; do
    refuse 1 "/config n_layer 1073741824 is outside 1..4096" --ckpt "$tmp/huge.h5" --format $f --out "$tmp/huge.$f"
    [ ! -e "$tmp/huge.$f" ] || fail "left huge.$f"
done
# /config against /model's shapes before anything is sized by it: fewer blocks
# than the file holds exported part of the model (exit 0), huge dimensions
# failed as "out of memory"
cp "$ck" "$tmp/fewer.h5"
$PY -c 'import h5py, numpy, sys
f = h5py.File(sys.argv[1], "r+"); f["config"].attrs["n_layer"] = numpy.int64(1)' "$tmp/fewer.h5"
cp "$ck" "$tmp/wide.h5"
$PY -c 'import h5py, numpy, sys
f = h5py.File(sys.argv[1], "r+"); f["config"].attrs["vocab_size"] = numpy.int64(1 << 24)
f["config"].attrs["n_embd"] = numpy.int64(1 << 16)' "$tmp/wide.h5"
for f in hf gguf; do
    refuse 1 "/config n_layer is 1 but /model holds more blocks" --ckpt "$tmp/fewer.h5" --format $f --out "$tmp/fewer.$f"
    refuse 1 "transformer.wte.weight is not a float tensor of shape \[16777216,65536\]" \
        --ckpt "$tmp/wide.h5" --format $f --out "$tmp/wide.$f"
    [ ! -e "$tmp/fewer.$f" ] && [ ! -e "$tmp/wide.$f" ] || fail "left fewer.$f"
done
# a tokenizer with more tokens than the model has rows: vocab.json held ids
# past config.json's vocab_size
cp "$ck" "$tmp/bigtok.h5"
$PY -c 'import h5py, numpy, sys
g = h5py.File(sys.argv[1], "r+")["tokenizer"]
g.attrs["type"] = numpy.bytes_("bpe"); g.attrs["vocab_size"] = numpy.int64(258)
g["merges"] = numpy.array([[32, 32], [101, 32]], dtype=numpy.int32)' "$tmp/bigtok.h5"
for f in hf gguf; do
    refuse 1 "the tokenizer has 258 tokens but the model only 256 rows" --ckpt "$tmp/bigtok.h5" --format $f --out "$tmp/bigtok.$f"
    [ ! -e "$tmp/bigtok.$f" ] || fail "left bigtok.$f"
done
# two tokens spelling the same bytes ("ab"+"c" and "a"+"bc"): vocab.json maps
# each spelling to one id, so the folder is refused (a model padded to 264 rows)
sed -e 's/"vocab_size": 256/"vocab_size": 264/' -e 's/"max_steps": 400/"max_steps": 1/' \
    -e "s|$tmp/run|$tmp/padded|" "$tmp/cfg.json" >"$tmp/padded.json"
"$BUILD/trainer" --config "$tmp/padded.json" 2>"$tmp/err" || { cat "$tmp/err"; fail "padded training failed"; }
cp "$tmp/padded/$(cat "$tmp/padded/latest")" "$tmp/dup.h5"
$PY -c 'import h5py, numpy, sys
g = h5py.File(sys.argv[1], "r+")["tokenizer"]
g.attrs["type"] = numpy.bytes_("bpe"); g.attrs["vocab_size"] = numpy.int64(260)
g["merges"] = numpy.array([[97, 98], [98, 99], [256, 99], [97, 257]], dtype=numpy.int32)' "$tmp/dup.h5"
refuse 1 "tokens 25[89] and 25[89] are the same bytes" --ckpt "$tmp/dup.h5" --format hf --out "$tmp/dup"
[ ! -e "$tmp/dup" ] || fail "left dup"
# the padded model's folder has a row per token (256), as vocab.json: transformers
# would otherwise sample ids that no token spells
padded="$tmp/padded/$(cat "$tmp/padded/latest")"
"$BUILD/export" --ckpt "$padded" --format hf --out "$tmp/hf_padded" >/dev/null || fail "export of a padded model"
$PY - "$padded" "$tmp/hf_padded" <<'EOF' || fail "padded model: the folder keeps padding rows"
import h5py, json, sys
sys.path.insert(0, "tests")
from hf_gpt2 import read_safetensors
ck, out = sys.argv[1:]
wte = read_safetensors(out + "/model.safetensors")["transformer.wte.weight"]
ours = h5py.File(ck, "r")["model/transformer.wte.weight"][...]
assert ours.shape[0] == 264 and tuple(wte.shape) == (256, ours.shape[1]), (ours.shape, wte.shape)
assert (wte.numpy() == ours[:256]).all()
assert json.load(open(out + "/config.json"))["vocab_size"] == 256
EOF
# NaN and inf weights (with a matching checksum) are refused: q8_0 made them
# finite int8 weights that infer ran
cp "$ck" "$tmp/nan.h5"
cp "$ck" "$tmp/big.h5"
$PY - "$tmp/nan.h5" "$tmp/big.h5" <<'EOF'
import h5py, numpy, sys
def checksum(a):   # io/checkpoint.h's
    b = a.astype("<f4").tobytes(); n = len(b) // 4; M = (1 << 64) - 1; K = 0x9E3779B97F4A7C15
    rot = lambda x, s: ((x << s) | (x >> (64 - s))) & M
    h = [1, 2, 3, 4]
    for i in range(n // 2):
        h[i % 4] = rot(h[i % 4] ^ int.from_bytes(b[8 * i:8 * i + 8], "little"), 31) * K & M
    r = n ^ (int.from_bytes(b[4 * n - 4:4 * n], "little") << 32 if n % 2 else 0)
    for l in range(4):
        r = rot(r ^ h[l], 27) * K & M
    return r
for path, bad in (sys.argv[1], (numpy.nan, numpy.inf)), (sys.argv[2], (-1e7, 9e6)):
    d = h5py.File(path, "r+")["model/transformer.h.0.attn.c_attn.weight"]
    assert checksum(d[...]) == int(d.attrs["checksum"])
    a = d[...]; a[3, 5], a[10, 7] = bad; d[...] = a
    d.attrs["checksum"] = numpy.uint64(checksum(a))
EOF
for t in f32 q8_0; do
    refuse 1 "/model/transformer.h.0.attn.c_attn.weight holds NaN or infinite values" \
        --ckpt "$tmp/nan.h5" --format gguf --type $t --out "$tmp/nan_$t.gguf"
    [ ! -e "$tmp/nan_$t.gguf" ] || fail "left nan_$t.gguf"
done
refuse 1 "holds NaN or infinite values" --ckpt "$tmp/nan.h5" --format hf --out "$tmp/nan_hf"
# weights past int8's range (infer --quant int8 refuses them) were clipped into q8_0
refuse 1 "c_attn.weight has a weight of -1e+07, beyond q8_0's range" \
    --ckpt "$tmp/big.h5" --format gguf --type q8_0 --out "$tmp/big.gguf"
"$BUILD/export" --ckpt "$tmp/big.h5" --format gguf --type f32 --out "$tmp/big.gguf" >/dev/null ||
    fail "f32 export of weights past q8_0's range"
[ ! -e "$tmp/nan_hf" ] || fail "left nan_hf"
refuse 2 "$tmp/hf_f32 already exists (choose a new folder)" --ckpt "$ck" --format hf --out "$tmp/hf_f32"
# an existing file, even the checkpoint being read, is never replaced
sum=$(cksum <"$ck")
for f in hf gguf; do
    refuse 2 "$ck already exists (choose a new" --ckpt "$ck" --format $f --out "$ck"
done
[ "$(cksum <"$ck")" = "$sum" ] && [ ! -e "$ck.tmp" ] || fail "an export onto its checkpoint changed it"
for f in --ckpt --format --out --dtype --type; do
    "$BUILD/export" --help | grep -q -- "^  $f " || fail "export --help does not describe $f"
done
echo "PASS e2e_export"
