#!/usr/bin/env python3
"""Times the same GPT-2 training step in PyTorch (Debian's python3-torch), for a
side-by-side comparison with build/trainer on this machine.

    python3 launch/torch_bench.py --config launch/configs/seed384.json [--steps 20] [--bf16]

Prints one JSON line: {"bench": "torch", "work": ..., "ms_per_step": ..., "tokens_per_s": ...,
"blas_core": ...}.  Run it once without and once with --bf16 and take the faster as
PyTorch's best on this CPU.

Debian's OpenBLAS 0.3.21 does not know recent CPUs and falls back to its SSE3
kernels ("Core: Prescott"), which makes PyTorch's fp32 products ~5x slow; unless
OPENBLAS_CORETYPE is set, it is set here (before torch loads OpenBLAS) to
SkylakeX on CPUs with AVX-512 and Haswell on CPUs with AVX2, and the core
OpenBLAS runs is printed on stderr and in the JSON line.
"""
import argparse, ctypes, ctypes.util, json, math, os, statistics, sys, time


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def choose_openblas_core():
    if "OPENBLAS_CORETYPE" not in os.environ:
        flags = cpu_flags()
        core = "SkylakeX" if "avx512f" in flags else "Haswell" if "avx2" in flags else None
        if core:
            os.environ["OPENBLAS_CORETYPE"] = core


def blas_core():
    """The kernel set OpenBLAS runs (the BLAS torch's libblas.so.3 resolves to)."""
    for name in ("libblas.so.3", ctypes.util.find_library("openblas") or "libopenblas.so.0"):
        try:
            lib = ctypes.CDLL(name)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib.openblas_get_corename().decode()
        except (OSError, AttributeError):
            continue
    return "not OpenBLAS"


choose_openblas_core()
try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    sys.exit("torch_bench: python3-torch is not installed (apt-get install python3-torch)")


class Block(nn.Module):
    def __init__(self, C, H):
        super().__init__()
        self.H = H
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.H, C // self.H).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True) if hasattr(F, "scaled_dot_product_attention") else self.naive(q, k, v, T)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    @staticmethod
    def naive(q, k, v, T):
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        return att.masked_fill(~mask, float("-inf")).softmax(-1) @ v


class GPT(nn.Module):
    def __init__(self, V, maxT, C, L, H):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(maxT, C)
        self.h = nn.ModuleList(Block(C, H) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
        for b in self.h:
            x = b(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--bf16", action="store_true", help="CPU autocast to bfloat16")
    a = ap.parse_args()
    c = json.load(open(a.config))
    V, maxT, C, L, H = c["vocab_size"], c["n_positions"], c["n_embd"], c["n_layer"], c["n_head"]
    B, T = c.get("batch_size", 8), c.get("seq_len", maxT)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
    torch.manual_seed(0)
    model = GPT(V, maxT, C, L, H)
    opt = torch.optim.AdamW(model.parameters(), lr=c.get("lr", 3e-4),
                            betas=(c.get("beta1", 0.9), c.get("beta2", 0.95)),
                            weight_decay=c.get("weight_decay", 0.1))
    times = []
    for _ in range(a.steps):
        idx = torch.randint(0, min(V, 256), (B, T))
        tgt = torch.randint(0, min(V, 256), (B, T))
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss = model(idx, tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
    ms = statistics.median(times[1:]) * 1e3
    name = os.path.splitext(os.path.basename(a.config))[0] + ("-bf16" if a.bf16 else "-fp32")
    core = blas_core()
    print("torch_bench %s: OpenBLAS core %s (OPENBLAS_CORETYPE=%s)" % (
          name, core, os.environ.get("OPENBLAS_CORETYPE", "")), file=sys.stderr)
    print(json.dumps({"bench": "torch", "work": name, "threads": torch.get_num_threads(),
                      "ms_per_step": round(ms, 1), "tokens_per_s": round(B * T / ms * 1e3),
                      "blas_core": core}))


if __name__ == "__main__":
    main()
