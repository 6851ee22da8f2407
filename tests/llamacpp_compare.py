"""llama.cpp's run of a GGUF file against build/infer's (tests/e2e_llamacpp.sh).

  llamacpp_compare.py TYPE OURS.json LLAMA.json IDS OURS.f32 LLAMA.f32 EVAL.json

OURS.json is tests/infer_trace's greedy generation {prompt, generated},
LLAMA.json tests/llamacpp_run.mjs's output, the .f32 files both sides' logits
on the teacher-forced ids in IDS ([n, n_vocab] float32), EVAL.json
build/infer --eval on the windows llama.cpp evaluated.  Prints the figures and
exits 1 when TYPE's bounds (BOUNDS below) do not hold.
"""
import json
import sys

import numpy as np

# per GGUF type: the generated tokens that must equal ours (from the first),
# the largest |logit difference| on the teacher-forced window, the share of
# its positions where the top-1 tokens agree, and the relative difference of
# the mean val cross-entropy.  Measured on this test's model: max |dlogit|
# 1.6e-4 / 2.0e-3 / 2.5e-2 (logits up to 7.5), loss 5e-8 / 6e-7 / 5e-6
# relative, all tokens equal; the bounds leave room for other CPUs' kernels.
BOUNDS = {
    "f32": {"same_tokens": 40, "max_dlogit": 1e-3, "top1": 1.0, "loss_rel": 1e-5},
    "f16": {"same_tokens": 40, "max_dlogit": 1e-2, "top1": 1.0, "loss_rel": 1e-5},
    "q8_0": {"same_tokens": 40, "max_dlogit": 0.1, "top1": 62 / 64, "loss_rel": 1e-4},
}


def main():
    t, ours_p, llama_p, ids_p, ours_l, llama_l, eval_p = sys.argv[1:8]
    ours, llama = json.load(open(ours_p)), json.load(open(llama_p))
    ev = json.load(open(eval_p))
    b = BOUNDS[t]
    V = llama["n_vocab"]
    a = np.fromfile(ours_l, dtype=np.float32)
    c = np.fromfile(llama_l, dtype=np.float32)
    n = len(open(ids_p).read().split())
    ok = True

    def check(cond, what):
        nonlocal ok
        if not cond:
            print("%s: FAILED: %s" % (t, what))
            ok = False

    check(a.size == n * V and c.size == n * V, "logits of %d x %d expected, %d and %d values"
          % (n, V, a.size, c.size))
    if not ok:
        return 1
    a, c = a.reshape(n, V), c.reshape(n, V)
    same = 0
    for x, y in zip(ours["generated"], llama["generated"]):
        if x != y:
            break
        same += 1
    dl = float(np.abs(a - c).max())
    top1 = float(np.mean(a.argmax(1) == c.argmax(1)))
    le = llama["eval"]
    rel = abs(le["loss"] - ev["loss"]) / ev["loss"]
    print("%s: prompt %d tokens %s; greedy: the first %d of %d generated tokens equal; "
          "teacher forced (%d positions): max |dlogit| %.2e (logits up to %.1f), top-1 agrees at "
          "%.1f%%; val %d windows: loss %.6f ours, %.6f llama.cpp (relative %.1e), accuracy "
          "%.4f / %.4f"
          % (t, len(ours["prompt"]), "equal" if ours["prompt"] == llama["prompt"] else "DIFFER",
             same, len(ours["generated"]), n, dl, float(np.abs(a).max()), 100 * top1,
             le["windows"], ev["loss"], le["loss"], rel, ev["accuracy"], le["accuracy"]))
    check(ours["prompt"] == llama["prompt"], "the prompt's tokens differ")
    check(same >= min(b["same_tokens"], len(ours["generated"])), "greedy tokens differ early")
    check(dl <= b["max_dlogit"], "logits differ by more than %g" % b["max_dlogit"])
    check(top1 >= b["top1"], "top-1 agreement below %g" % b["top1"])
    check(le["windows"] == ev["windows"] and le["tokens"] == ev["tokens"], "other eval windows")
    check(rel <= b["loss_rel"], "val loss differs by more than %g relative" % b["loss_rel"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
