#!/usr/bin/python3
"""An independent GGUF reader (numpy) that checks build/export's files.

    gguf_check.py --ckpt CK.h5 --q8 Q8.h5 F32.gguf F16.gguf Q8_0.gguf
    gguf_check.py --compare-listing NPM.json FILE.gguf

The first form checks each file against the checkpoint it came from: exactly
the metadata keys llama.cpp's gpt2 loader reads, with the checkpoint's values;
exactly its tensors under llama.cpp's names and orientation ({in, out}, data
[out][in]); F32 data equal to the checkpoint's, F16 equal to its round to
nearest even, and Q8_0 blocks (fp16 scale, 32 int8) equal to infer's own int8
weights (the --save-quantized file Q8.h5).  The second compares this reader's
view with the listing tests/gguf_list.cjs made with @huggingface/gguf.
"""
import argparse, json, struct, sys

import h5py
import numpy as np

SCALARS = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1",
           10: "<u8", 11: "<i8", 12: "<f8"}
TYPES = {0: "F32", 1: "F16", 8: "Q8_0", 30: "BF16"}


class Reader:
    def __init__(self, path):
        self.b = open(path, "rb").read()
        self.at = 0
        magic = self.take(4)
        assert magic == b"GGUF", magic
        self.version, ntensors, nkv = self.unpack("<IQQ")
        self.kv = {}
        for _ in range(nkv):
            key = self.string()
            vtype = self.unpack("<I")[0]
            self.kv[key] = (vtype, self.value(vtype))
        align = self.kv.get("general.alignment", (4, 32))[1]
        self.tensors = []
        for _ in range(ntensors):
            name = self.string()
            ndim = self.unpack("<I")[0]
            ne = list(self.unpack("<%dQ" % ndim))
            ttype, offset = self.unpack("<IQ")
            self.tensors.append({"name": name, "ne": ne, "type": ttype, "offset": offset})
        self.data = (self.at + align - 1) // align * align
        for t in self.tensors:
            assert t["offset"] % align == 0, t

    def take(self, n):
        out = self.b[self.at:self.at + n]
        assert len(out) == n, "truncated"
        self.at += n
        return out

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def string(self):
        return self.take(self.unpack("<Q")[0]).decode("utf-8")

    def value(self, vtype):
        if vtype in SCALARS:
            v = np.frombuffer(self.take(np.dtype(SCALARS[vtype]).itemsize), SCALARS[vtype])[0]
            return bool(v) if vtype == 7 else v.item()
        if vtype == 8:
            return self.string()
        assert vtype == 9, vtype
        etype, n = self.unpack("<IQ")
        return (etype, [self.value(etype) for _ in range(n)])

    def tensor(self, name):
        t = next(t for t in self.tensors if t["name"] == name)
        n = int(np.prod(t["ne"]))
        at = self.data + t["offset"]
        if TYPES[t["type"]] == "F32":
            return t, np.frombuffer(self.b, "<f4", n, at)
        if TYPES[t["type"]] == "F16":
            return t, np.frombuffer(self.b, "<f2", n, at)
        blocks = np.frombuffer(self.b, np.dtype([("d", "<f2"), ("qs", "i1", 32)]), n // 32, at)
        return t, blocks


def llama_names(L):
    """(gguf name, checkpoint name, is a weight matrix) in the file's order."""
    out = [("token_embd.weight", "transformer.wte.weight", False),
           ("position_embd.weight", "transformer.wpe.weight", False)]
    blk = [("attn_norm.weight", "ln_1.weight", False), ("attn_norm.bias", "ln_1.bias", False),
           ("attn_qkv.weight", "attn.c_attn.weight", True), ("attn_qkv.bias", "attn.c_attn.bias", False),
           ("attn_output.weight", "attn.c_proj.weight", True), ("attn_output.bias", "attn.c_proj.bias", False),
           ("ffn_norm.weight", "ln_2.weight", False), ("ffn_norm.bias", "ln_2.bias", False),
           ("ffn_up.weight", "mlp.c_fc.weight", True), ("ffn_up.bias", "mlp.c_fc.bias", False),
           ("ffn_down.weight", "mlp.c_proj.weight", True), ("ffn_down.bias", "mlp.c_proj.bias", False)]
    for l in range(L):
        out += [("blk.%d.%s" % (l, g), "transformer.h.%d.%s" % (l, h), m) for g, h, m in blk]
    out += [("output_norm.weight", "transformer.ln_f.weight", False),
            ("output_norm.bias", "transformer.ln_f.bias", False)]
    return out


def check_file(path, ck, q8):
    r = Reader(path)
    cfg = {k: int(ck["config"].attrs[k]) for k in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")}
    ftype = r.kv["general.file_type"][1]
    kind = {0: "F32", 1: "F16", 7: "Q8_0"}[ftype]
    want_keys = {"general.architecture", "general.name", "general.file_type", "gpt2.context_length",
                 "gpt2.embedding_length", "gpt2.feed_forward_length", "gpt2.block_count",
                 "gpt2.attention.head_count", "gpt2.attention.layer_norm_epsilon",
                 "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                 "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "gpt_cpu.tokenizer.type"}
    if kind == "Q8_0":
        want_keys.add("general.quantization_version")
    want_keys |= {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"}
    attr = lambda name, default=None: (lambda v: v.decode() if isinstance(v, bytes) else v)(
        ck["tokenizer"].attrs.get(name, default))
    kind_tok = attr("type")
    if kind_tok == "bpe":   # its split, "bytes" where the checkpoint predates it
        want_keys.add("gpt_cpu.tokenizer.split")
        assert r.kv["gpt_cpu.tokenizer.split"][1] == attr("split", "bytes"), r.kv["gpt_cpu.tokenizer.split"]
    if "chat_template" in ck["tokenizer"]:   # the template the tokenizer carries, as is
        want_keys.add("tokenizer.chat_template")
        chat = ck["tokenizer"]["chat_template"][()].tobytes().decode("utf-8")
        assert r.kv["tokenizer.chat_template"][1] == chat, "tokenizer.chat_template differs"
    assert set(r.kv) == want_keys, sorted(set(r.kv) ^ want_keys)
    # gpt2's <|endoftext|>; the others have none: the NUL byte, not llama.cpp's default 11
    stop = 50256 if kind_tok == "gpt2" else 0
    assert r.kv["tokenizer.ggml.eos_token_id"][1] == stop, r.kv["tokenizer.ggml.eos_token_id"]
    expect = {"general.architecture": "gpt2", "gpt2.context_length": cfg["n_positions"],
              "gpt2.embedding_length": cfg["n_embd"], "gpt2.feed_forward_length": 4 * cfg["n_embd"],
              "gpt2.block_count": cfg["n_layer"], "gpt2.attention.head_count": cfg["n_head"],
              "tokenizer.ggml.model": "gpt2"}
    for k, v in expect.items():
        assert r.kv[k][1] == v, (k, r.kv[k], v)
    assert abs(r.kv["gpt2.attention.layer_norm_epsilon"][1] - 1e-5) < 1e-12
    tokens = r.kv["tokenizer.ggml.tokens"][1][1]
    assert len(tokens) == cfg["vocab_size"] or int(ck["tokenizer"].attrs["vocab_size"]) == len(tokens), len(tokens)
    assert len(r.kv["tokenizer.ggml.token_type"][1][1]) == len(tokens)
    names = llama_names(cfg["n_layer"])
    assert [t["name"] for t in r.tensors] == [g for g, _, _ in names], [t["name"] for t in r.tensors]
    worst = 0.0
    for g, h, matrix in names:
        w = ck["model"][h][()].astype(np.float32)
        if matrix:
            w = w.T   # Conv1D [in, out] -> llama.cpp's [out][in] rows
        t, data = r.tensor(g)
        assert t["ne"] == list(reversed(w.shape)), (g, t["ne"], w.shape)
        quantized = w.ndim == 2 and g != "position_embd.weight"
        want_type = kind if quantized else "F32"
        assert TYPES[t["type"]] == want_type, (g, TYPES[t["type"]], want_type)
        flat = w.reshape(-1)
        if want_type == "F32":
            assert np.array_equal(data, flat), g
        elif want_type == "F16":
            assert np.array_equal(data.view(np.uint16), flat.astype(np.float16).view(np.uint16)), g
            worst = max(worst, float(np.max(np.abs(data.astype(np.float32) - flat))))
        else:
            qname = "lm_head.weight" if g == "token_embd.weight" else h
            wq = q8["q8"][qname][()].reshape(-1)
            ws = q8["q8"][qname + "_scale"][()].reshape(-1)
            assert np.array_equal(data["qs"].reshape(-1), wq), g
            assert np.array_equal(data["d"].astype(np.float32), ws.astype(np.float32)), g
            deq = data["d"].astype(np.float32)[:, None] * data["qs"].astype(np.float32)
            worst = max(worst, float(np.max(np.abs(deq.reshape(-1) - flat))))
    print("%s: %s, %d keys, %d tensors as llama.cpp names them, data equal to the checkpoint%s"
          % (path.split("/")[-1], kind, len(r.kv), len(r.tensors),
             "" if kind == "F32" else " within %s (largest difference %.2e)"
             % ("fp16 rounding" if kind == "F16" else "infer's int8 weights, exactly;", worst)))


def compare_listing(listing, path):
    npm = json.load(open(listing))
    r = Reader(path)
    assert int(npm["version"]) == r.version == 3, npm["version"]
    assert set(npm["metadata"]) == set(r.kv), sorted(set(npm["metadata"]) ^ set(r.kv))
    for k, (vtype, v) in r.kv.items():
        m = npm["metadata"][k]
        assert m["type"] == vtype, (k, m["type"], vtype)
        if vtype == 9:
            etype, items = v
            assert m["sub"] == etype and m["value"]["length"] == len(items), (k, m)
            if items:
                assert str(m["value"]["first"]) == str(items[0]) and str(m["value"]["last"]) == str(items[-1]), k
        elif vtype == 6:
            assert abs(m["value"] - v) <= 1e-6 * abs(v), (k, m["value"], v)
        else:
            assert str(m["value"]) == str(v), (k, m["value"], v)
    assert [t["name"] for t in npm["tensors"]] == [t["name"] for t in r.tensors]
    for a, b in zip(npm["tensors"], r.tensors):
        assert [int(x) for x in a["shape"]] == b["ne"] and a["dtype"] == b["type"] and int(a["offset"]) == b["offset"], (a, b)
    assert int(npm["data_offset"]) == r.data, (npm["data_offset"], r.data)
    print("%s: @huggingface/gguf lists the same %d keys and %d tensor infos"
          % (path.split("/")[-1], len(r.kv), len(r.tensors)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt")
    ap.add_argument("--q8")
    ap.add_argument("--compare-listing")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    if a.compare_listing:
        compare_listing(a.compare_listing, a.files[0])
        return
    with h5py.File(a.ckpt, "r") as ck, h5py.File(a.q8, "r") as q8:
        for f in a.files:
            check_file(f, ck, q8)


if __name__ == "__main__":
    main()
