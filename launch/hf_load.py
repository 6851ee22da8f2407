#!/usr/bin/python3
"""Loads a gpt-cpu checkpoint's /model into PyTorch under its Hugging Face GPT-2
names and checks that PyTorch computes the same loss as the trainer.

    /usr/bin/python3 launch/hf_load.py --ckpt OUT_DIR/ckpt_000600.h5 --data DATA_DIR \
        [--windows N] [--expect LOSS]

The state dict uses GPT2LMHeadModel's keys (transformer.wte.weight, transformer.h.0.attn.
c_attn.weight [C,3C] in the Conv1D convention, ...).  When the `transformers` package is
installed it is also loaded into GPT2LMHeadModel itself.  The loss is the mean
cross-entropy over the first N val windows of T+1 tokens (all of them by default), the
windows the trainer's eval uses; --expect compares it with the trainer's val_loss.  As in
the trainer, the logits of padding rows (a vocab_size above the data's vocabulary, as
llm.c pads 50257 to 50304) are -inf.
Needs h5py and torch (Debian: python3-h5py python3-torch).

A file that cannot be read or is not what it should be (missing, truncated, not a
checkpoint, not a token shard) is one line on stderr, `hf_load.py: FILE: reason`, and
exit status 1; bad arguments exit 2.
"""
import argparse, json, math, os, struct, sys

try:
    import h5py
    import torch
    import torch.nn.functional as F
except ImportError as e:
    sys.exit("hf_load.py: %s (install python3-h5py and python3-torch)" % e)


def fail(what, reason):
    """One line on stderr and exit status 1."""
    print("hf_load.py: %s: %s" % (what, reason), file=sys.stderr)
    sys.exit(1)


def reason(e):
    """An expected error as one line: the system's words for an errno (h5py's
    message repeats the path), else the library's message."""
    if isinstance(e, OSError) and e.errno:
        return os.strerror(e.errno)
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    return str(e)


def read_tokens(path):
    """A token shard: 32-byte header (magic, version, width, count, vocab), then tokens;
    returns the tokens and the header's vocab.  OSError if it cannot be read, ValueError
    if it is not a whole token shard."""
    with open(path, "rb") as f:
        head = f.read(32)
        if len(head) < 32:
            raise ValueError("not a token shard (shorter than its 32-byte header)")
        magic, version, width, count, vocab, _ = struct.unpack("<8sIIQII", head)
        if magic != b"GPTTOKS\0" or version != 1 or width not in (2, 4):
            raise ValueError("not a token shard (magic, version or token width)")
        body = f.read(count * width)
        if len(body) != count * width:
            raise ValueError("truncated: %d of the header's %d tokens" % (len(body) // width, count))
        dtype = torch.int16 if width == 2 else torch.int32
        data = torch.frombuffer(bytearray(body), dtype=dtype) if count else torch.zeros(0, dtype=dtype)
    return data.to(torch.int64) & (0xFFFF if width == 2 else 0xFFFFFFFF), vocab


def model_names(n_layer):
    """The /model tensors the forward reads, Hugging Face names."""
    block = ["ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"]
    names = ["transformer.wte.weight", "transformer.wpe.weight",
             "transformer.ln_f.weight", "transformer.ln_f.bias"]
    for l in range(n_layer):
        names += ["transformer.h.%d.%s.%s" % (l, b, wb) for b in block for wb in ("weight", "bias")]
    return names


def load_state(path):
    """The config's dimensions and /model; OSError, KeyError or ValueError (h5py's) when
    the file is unreadable or not a full-precision checkpoint."""
    with h5py.File(path, "r") as f:
        cfg = {k: int(f["config"].attrs[k]) for k in
               ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")}
        cfg["seq_len"] = int(f["config"].attrs.get("seq_len", cfg["n_positions"])) or cfg["n_positions"]
        for name in model_names(cfg["n_layer"]):
            if name not in f["model"]:
                raise KeyError("no /model/%s (an int8 model file or not a gpt-cpu checkpoint)" % name)
        state = {name: torch.from_numpy(f["model"][name][()]) for name in f["model"]}
    state["lm_head.weight"] = state["transformer.wte.weight"]   # tied, not stored
    return cfg, state


def gpt2_loss(cfg, sd, idx, tgt, vocab_real=None):
    """GPT-2 forward written against the HF names (Conv1D: y = x W + b); the logits of
    rows from vocab_real on (padding) are -inf, as the trainer masks them."""
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
    if vocab_real is not None:
        logits[..., vocab_real:] = float("-inf")
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
        sys.exit("hf_load.py: GPT2LMHeadModel refused keys: missing %s unexpected %s" % (missing, unexpected))
    return "loaded into transformers.GPT2LMHeadModel without renaming"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--data", required=True, help="the run's data_dir (val.tok)")
    ap.add_argument("--windows", type=int, default=0, help="val windows to score (0: all)")
    ap.add_argument("--expect", type=float, help="the trainer's val_loss on the same windows")
    a = ap.parse_args()
    if a.windows < 0:
        ap.error("--windows must be 0 or more, not %d" % a.windows)
    try:
        cfg, sd = load_state(a.ckpt)
    except (OSError, KeyError, ValueError) as e:
        fail(a.ckpt, reason(e))
    if not os.path.isdir(a.data):
        fail(a.data, "no such directory (--data is the run's data_dir)" if not os.path.exists(a.data)
             else "not a directory (--data is the run's data_dir)")
    T = cfg["seq_len"]
    path = os.path.join(a.data, "val.tok")
    try:
        val, vocab_real = read_tokens(path)
    except (OSError, ValueError) as e:
        fail(path, reason(e))
    n = (val.numel() - 1) // T
    if n < 1:
        fail(path, "%d tokens: not one window of seq_len + 1 = %d" % (val.numel(), T + 1))
    if int(val.max()) >= cfg["vocab_size"]:
        fail(path, "token %d is past the checkpoint's vocab_size %d (another tokenizer's data?)"
             % (int(val.max()), cfg["vocab_size"]))
    if a.windows:
        n = min(n, a.windows)
    total = 0.0
    with torch.no_grad():
        for w0 in range(0, n, 64):
            w = torch.arange(w0, min(n, w0 + 64))
            starts = (w * T).unsqueeze(1) + torch.arange(T + 1)
            win = val[starts]
            total += float(gpt2_loss(cfg, sd, win[:, :-1], win[:, 1:], vocab_real))
    loss = total / (n * T)
    note = try_transformers(cfg, sd)
    print(json.dumps({"ckpt": a.ckpt, "windows": n, "loss": loss, "note": note}))
    if a.expect is not None and abs(loss - a.expect) > 1e-4 * max(1.0, abs(a.expect)):
        sys.exit("hf_load.py: PyTorch loss %.6f differs from the trainer's %.6f" % (loss, a.expect))


if __name__ == "__main__":
    main()
