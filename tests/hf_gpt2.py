#!/usr/bin/python3
"""A Hugging Face GPT-2 folder made by PyTorch, and PyTorch's loss on it: the
reference side of tests/e2e_import.sh.

    hf_gpt2.py make DIR --tokenizer-dir D [--dtype F32|F16|BF16] [--no-prefix]
                        [--lm-head same|differ|only|none] [--dims V,T,C,L,H] [--seed S]
                        [--wte-std X] [--mask-dtype F32|U8|BOOL] [--shards N] [--torch]
    hf_gpt2.py loss DIR --tokens FILE.tok --seq-len T [--windows N]

`make` writes config.json, model.safetensors (random GPT-2 weights, written
here byte by byte, not by a library), vocab.json and merges.txt (copied from
D's encoder.json and vocab.bpe, the same data under OpenAI's names).  The causal
mask buffers (attn.bias) are F32, or with --mask-dtype U8 or BOOL as transformers
4.x saved them, beside a scalar attn.masked_bias.  With --shards N the weights are
N files model-0000K-of-0000N.safetensors (consecutive tensors each) named by
model.safetensors.index.json, as transformers' save_pretrained shards them; with
--torch they are pytorch_model.bin, written by torch.save (tied tensors share a storage);
with both, N files pytorch_model-0000K-of-0000N.bin, each torch.save of a plain
dict, named by pytorch_model.bin.index.json (save_pretrained(safe_serialization=
False) past max_shard_size).  `loss`
reads the safetensors file with numpy and runs the plain PyTorch GPT-2 forward
of launch/hf_load.py over the windows the trainer's eval uses.
Needs Debian's python3-torch, python3-numpy and python3-h5py.
"""
import argparse, collections, json, os, shutil, struct, sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "launch"))
from hf_load import gpt2_loss, read_tokens  # noqa: E402

SIZES = {"F32": 4, "F16": 2, "BF16": 2}
MASK_DTYPES = ("F32", "U8", "BOOL")


def tensor_bytes(t, dtype):
    if dtype == "F32":
        return t.float().numpy().astype("<f4").tobytes()
    if dtype == "F16":
        return t.half().numpy().astype("<f2").tobytes()
    if dtype in ("U8", "BOOL"):
        return t.to(torch.uint8).numpy().tobytes()
    return t.bfloat16().view(torch.int16).numpy().astype("<i2").tobytes()


def write_safetensors(path, tensors, dtype, mask_dtype="F32"):
    header, blobs, at = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        dt = mask_dtype if name.endswith(".attn.bias") else dtype
        b = tensor_bytes(t, dt)
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def write_sharded(d, tensors, dtype, mask_dtype, n, torch_save=False):
    names = list(tensors)
    weight_map, total = {}, 0
    for k in range(n):
        part = {name: tensors[name] for name in names[k * len(names) // n:(k + 1) * len(names) // n]}
        if torch_save:
            file = "pytorch_model-%05d-of-%05d.bin" % (k + 1, n)
            write_torch(os.path.join(d, file), part, dtype, mask_dtype, dict)
        else:
            file = "model-%05d-of-%05d.safetensors" % (k + 1, n)
            write_safetensors(os.path.join(d, file), part, dtype, mask_dtype)
        weight_map.update({name: file for name in part})
        total += sum(len(tensor_bytes(t, dtype)) for t in part.values())
    index = "pytorch_model.bin.index.json" if torch_save else "model.safetensors.index.json"
    with open(os.path.join(d, index), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def torch_dtype(dtype):
    return {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
            "U8": torch.uint8, "BOOL": torch.bool}[dtype]


def write_torch(path, tensors, dtype, mask_dtype, container=collections.OrderedDict):
    sd, done = container(), {}
    for name, t in tensors.items():   # a tensor stored twice shares one storage, as in a state_dict
        dt = mask_dtype if name.endswith(".attn.bias") else dtype
        if id(t) not in done:
            done[id(t)] = t.to(torch_dtype(dt)).contiguous()
        sd[name] = done[id(t)].detach()   # state_dict() detaches each: two objects, one storage
    torch.save(sd, path)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base, out = 8 + n, {}
    for name, e in header.items():
        if name == "__metadata__" or e["dtype"] not in SIZES:   # a U8 or BOOL mask
            continue
        b, end = e["data_offsets"]
        raw = data[base + b:base + end]
        if e["dtype"] == "F32":
            a = np.frombuffer(raw, "<f4")
        elif e["dtype"] == "F16":
            a = np.frombuffer(raw, "<f2").astype(np.float32)
        else:
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        out[name] = torch.from_numpy(a.reshape(e["shape"]).copy())
    return out


def random_gpt2(V, T, C, L, H, seed, wte_std, masked_bias):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, std=0.02: torch.randn(*s, generator=g) * std
    sd = {"transformer.wte.weight": r(V, C, std=wte_std), "transformer.wpe.weight": r(T, C, std=0.01)}
    for l in range(L):
        p = "transformer.h.%d." % l
        sd.update({
            p + "ln_1.weight": 1 + r(C, std=0.1), p + "ln_1.bias": r(C),
            p + "attn.bias": torch.ones(1, 1, T, T).tril(),   # a buffer, not a parameter
            **({p + "attn.masked_bias": torch.tensor(-1e4)} if masked_bias else {}),
            p + "attn.c_attn.weight": r(C, 3 * C), p + "attn.c_attn.bias": r(3 * C),
            p + "attn.c_proj.weight": r(C, C), p + "attn.c_proj.bias": r(C),
            p + "ln_2.weight": 1 + r(C, std=0.1), p + "ln_2.bias": r(C),
            p + "mlp.c_fc.weight": r(C, 4 * C), p + "mlp.c_fc.bias": r(4 * C),
            p + "mlp.c_proj.weight": r(4 * C, C), p + "mlp.c_proj.bias": r(C),
        })
    sd["transformer.ln_f.weight"] = 1 + r(C, std=0.1)
    sd["transformer.ln_f.bias"] = r(C)
    return sd


def make(a):
    V, T, C, L, H = (int(x) for x in a.dims.split(","))
    os.makedirs(a.dir, exist_ok=True)
    sd = random_gpt2(V, T, C, L, H, a.seed, a.wte_std, a.mask_dtype != "F32")
    if a.lm_head == "same":
        sd["lm_head.weight"] = sd["transformer.wte.weight"]
    elif a.lm_head == "differ":
        sd["lm_head.weight"] = sd["transformer.wte.weight"] + 1e-3
    elif a.lm_head == "only":   # the tied pair under one name, as safetensors' save_model keeps it
        sd["lm_head.weight"] = sd.pop("transformer.wte.weight")
    if a.no_prefix:
        sd = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in sd.items()}
    if a.shards:
        write_sharded(a.dir, sd, a.dtype, a.mask_dtype, a.shards, a.torch)
    elif a.torch:
        write_torch(os.path.join(a.dir, "pytorch_model.bin"), sd, a.dtype, a.mask_dtype)
    else:
        write_safetensors(os.path.join(a.dir, "model.safetensors"), sd, a.dtype, a.mask_dtype)
    cfg = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": V,
           "n_positions": T, "n_ctx": T, "n_embd": C, "n_layer": L, "n_head": H, "n_inner": None,
           "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new",
           "bos_token_id": 50256, "eos_token_id": 50256, "tie_word_embeddings": True}
    with open(os.path.join(a.dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    shutil.copy(os.path.join(a.tokenizer_dir, "encoder.json"), os.path.join(a.dir, "vocab.json"))
    shutil.copy(os.path.join(a.tokenizer_dir, "vocab.bpe"), os.path.join(a.dir, "merges.txt"))


def loss(a):
    with open(os.path.join(a.dir, "config.json")) as f:
        cfg = json.load(f)
    sd = {k if k.startswith("transformer.") or k.startswith("lm_head") else "transformer." + k: v
          for k, v in read_safetensors(os.path.join(a.dir, "model.safetensors")).items()}
    sd.setdefault("transformer.wte.weight", sd.get("lm_head.weight"))   # --lm-head only
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    T = a.seq_len
    val, _ = read_tokens(a.tokens)
    n = (val.numel() - 1) // T
    if a.windows:
        n = min(n, a.windows)
    total = 0.0
    with torch.no_grad():
        for w0 in range(0, n, 64):
            w = torch.arange(w0, min(n, w0 + 64))
            win = val[(w * T).unsqueeze(1) + torch.arange(T + 1)]
            total += float(gpt2_loss(cfg, sd, win[:, :-1], win[:, 1:]).double())
    print(json.dumps({"windows": n, "loss": total / (n * T)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir")
    m.add_argument("--tokenizer-dir", required=True)
    m.add_argument("--dtype", default="F32", choices=sorted(SIZES))
    m.add_argument("--no-prefix", action="store_true")
    m.add_argument("--mask-dtype", default="F32", choices=MASK_DTYPES)
    m.add_argument("--lm-head", default="none", choices=("same", "differ", "only", "none"))
    m.add_argument("--dims", default="50257,64,64,2,4")
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--shards", type=int, default=0)
    m.add_argument("--torch", action="store_true")
    m.add_argument("--wte-std", type=float, default=0.02,
                   help="a large one makes confident, wrong logits: a loss far from a fresh model's")
    l = sub.add_parser("loss")
    l.add_argument("dir")
    l.add_argument("--tokens", required=True)
    l.add_argument("--seq-len", type=int, required=True)
    l.add_argument("--windows", type=int, default=0)
    a = ap.parse_args()
    make(a) if a.cmd == "make" else loss(a)


if __name__ == "__main__":
    main()
