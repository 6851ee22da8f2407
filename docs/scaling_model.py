import math, sys
# per-rank compute per step C (s), fp32 gradient bytes S, buckets nb (measured layouts)
models = {"seed384": (0.56, 53.4e6, 9), "gpt2-124M": (2.56, 497.8e6, 25)}
o, L, p = 20e-6, 50e-6, 200e-6     # per-message CPU cost, one-way latency, progress poll
h = 0.5                            # share of compute the exchange can hide behind
tail = 1 << 20                     # last bucket, bytes (TAIL_FLOATS fp32)
eff_tcp = 0.94
def per_bucket(N, sched):
    """Latency of one bucket's phase: pairwise posts its N-1 messages at once;
    a ring takes N-1 dependent steps, recursive halving log2 N (one more fold
    step when N is not a power of two), each waiting for a progress poll."""
    if sched == "pairwise": return p + L + (N - 1) * o
    if sched == "ring":     return (N - 1) * (p + o + L)
    return (math.ceil(math.log2(N)) + (N & (N - 1) != 0)) * (p + o + L)
def crossover(sched, top=4096):
    """The fewest ranks from which sched costs less per bucket and phase than pairwise."""
    return next((N for N in range(2, top + 1) if per_bucket(N, sched) < per_bucket(N, "pairwise")), None)
def comm(N, rate, S, nb, sched):
    B = rate / 8 * eff_tcp
    bw = 2 * (N - 1) / N * S / B
    lat = nb * 2 * per_bucket(N, sched)
    per_bucket_lat = lat / nb
    t_tail = per_bucket_lat + 2 * (N - 1) / N * tail / B
    return bw + lat, t_tail
def row(model, wire, sched, rate):
    C, S, nb = models[model]
    if wire == "bf16": S /= 2
    out = []
    for N in (2, 4, 8, 16, 32, 64):
        t, t_tail = comm(N, rate, S, nb, sched)
        exposed = max(t - h * C, t_tail)
        out.append((C + exposed, C / (C + exposed)))
    return out
if len(sys.argv) == 6 and sys.argv[1] == "--comm":
    # the time in flight of one step's exchange: --comm MODEL WIRE N GBIT
    model, wire, N, gbit = sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    _, S, nb = models[model]
    t, _ = comm(N, gbit * 1e9, S / 2 if wire == "bf16" else S, nb, "pairwise")
    print("%.0f ms" % (1e3 * t))
    sys.exit(0)
print("| model | wire | schedule | link | " + " | ".join("N=%d" % n for n in (2,4,8,16,32,64)) + " |")
print("|---|---|---|---|" + "---|" * 6)
for model in models:
    for wire in ("fp32", "bf16"):
        for rate in (1e9, 10e9, 25e9, 100e9):
            for sched in ("pairwise", "ring", "halving"):
                r = row(model, wire, sched, rate)
                print("| %s | %s | %s | %g Gbit/s | %s |" % (model, wire, sched, rate / 1e9,
                      " | ".join("%.2f s, %.0f%%" % (t, 100 * e) for t, e in r)))
for sched in ("halving", "ring"):
    n = crossover(sched)
    print("%s costs less per bucket and phase than pairwise %s" % (sched,
          "from %d ranks on (%.2f ms against %.2f ms there)" % (n, 1e3 * per_bucket(n, sched),
          1e3 * per_bucket(n, "pairwise")) if n else "at no rank count up to 4096"))
