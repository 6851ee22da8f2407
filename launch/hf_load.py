#!/usr/bin/python3
"""Loads a gpt-cpu checkpoint's /model into PyTorch under its Hugging Face GPT-2
names and checks that PyTorch computes the same loss as the trainer.

    /usr/bin/python3 launch/hf_load.py --ckpt OUT_DIR/ckpt_000600.h5 --data DATA_DIR \
        [--windows N] [--expect LOSS]

The state dict uses GPT2LMHeadModel's keys (transformer.wte.weight, transformer.h.0.attn.
c_attn.weight [C,3C] in the Conv1D convention, ...).  When the `transformers` package is
installed it is also loaded into GPT2LMHeadModel itself.  The loss is the mean
cross-entropy over the first N val windows of T+1 tokens (all of them by default), the
windows the trainer's eval uses; --expect compares it with the trainer's val_loss.
Needs h5py and torch (Debian: python3-h5py python3-torch).
"""
import argparse, json, math, struct, sys

try:
    import h5py
    import torch
    import torch.nn.functional as F
except ImportError as e:
    sys.exit("hf_load: %s (install python3-h5py and python3-torch)" % e)


def read_tokens(path):
    """A token shard: 32-byte header (magic, version, width, count, vocab), then tokens."""
    with open(path, "rb") as f:
        head = f.read(32)
        magic, version, width, count, vocab, _ = struct.unpack("<8sIIQII", head)
        if magic != b"GPTTOKS\0" or version != 1 or width not in (2, 4):
            sys.exit("hf_load: %s is not a token shard" % path)
        dtype = torch.int16 if width == 2 else torch.int32
        data = torch.frombuffer(bytearray(f.read(count * width)), dtype=dtype)
    return data.to(torch.int64) & (0xFFFF if width == 2 else 0xFFFFFFFF)


def load_state(path):
    with h5py.File(path, "r") as f:
        cfg = {k: int(f["config"].attrs[k]) for k in
               ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")}
        cfg["seq_len"] = int(f["config"].attrs.get("seq_len", cfg["n_positions"]))
        state = {name: torch.from_numpy(f["model"][name][()]) for name in f["model"]}
    state["lm_head.weight"] = state["transformer.wte.weight"]   # tied, not stored
    return cfg, state


def gpt2_loss(cfg, sd, idx, tgt):
    """GPT-2 forward written against the HF names (Conv1D: y = x W + b)."""
    C, H = cfg["n_embd"], cfg["n_head"]
    B, T = idx.shape
    p = lambda n: sd["transformer." + n]
    x = p("wte.weight")[idx] + p("wpe.weight")[:T]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for l in range(cfg["n_layer"]):
        h = lambda n: p("h.%d.%s" % (l, n))
        a = F.layer_norm(x, (C,), h("ln_1.weight"), h("ln_1.bias"), 1e-5)
        q, k, v = (a @ h("attn.c_attn.weight") + h("attn.c_attn.bias")).split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // H)
        y = att.masked_fill(~mask, float("-inf")).softmax(-1) @ v
        x = x + y.transpose(1, 2).reshape(B, T, C) @ h("attn.c_proj.weight") + h("attn.c_proj.bias")
        m = F.layer_norm(x, (C,), h("ln_2.weight"), h("ln_2.bias"), 1e-5)
        m = F.gelu(m @ h("mlp.c_fc.weight") + h("mlp.c_fc.bias"), approximate="tanh")
        x = x + m @ h("mlp.c_proj.weight") + h("mlp.c_proj.bias")
    x = F.layer_norm(x, (C,), p("ln_f.weight"), p("ln_f.bias"), 1e-5)
    logits = x @ sd["lm_head.weight"].t()
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt.reshape(-1), reduction="sum")


def try_transformers(cfg, sd):
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        return "transformers not installed: checked with the plain PyTorch forward only"
    model = GPT2LMHeadModel(GPT2Config(vocab_size=cfg["vocab_size"], n_positions=cfg["n_positions"],
                                       n_embd=cfg["n_embd"], n_layer=cfg["n_layer"],
                                       n_head=cfg["n_head"]))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith((".attn.bias", ".attn.masked_bias"))]
    if missing or unexpected:
        sys.exit("hf_load: GPT2LMHeadModel refused keys: missing %s unexpected %s" % (missing, unexpected))
    return "loaded into transformers.GPT2LMHeadModel without renaming"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--data", required=True, help="the run's data_dir (val.tok)")
    ap.add_argument("--windows", type=int, default=0, help="val windows to score (0: all)")
    ap.add_argument("--expect", type=float, help="the trainer's val_loss on the same windows")
    a = ap.parse_args()
    cfg, sd = load_state(a.ckpt)
    T = cfg["seq_len"]
    val = read_tokens(a.data + "/val.tok")
    n = (val.numel() - 1) // T
    if a.windows:
        n = min(n, a.windows)
    total = 0.0
    with torch.no_grad():
        for w0 in range(0, n, 64):
            w = torch.arange(w0, min(n, w0 + 64))
            starts = (w * T).unsqueeze(1) + torch.arange(T + 1)
            win = val[starts]
            total += float(gpt2_loss(cfg, sd, win[:, :-1], win[:, 1:]))
    loss = total / (n * T)
    note = try_transformers(cfg, sd)
    print(json.dumps({"ckpt": a.ckpt, "windows": n, "loss": loss, "note": note}))
    if a.expect is not None and abs(loss - a.expect) > 1e-4 * max(1.0, abs(a.expect)):
        sys.exit("hf_load: PyTorch loss %.6f differs from the trainer's %.6f" % (loss, a.expect))


if __name__ == "__main__":
    main()
