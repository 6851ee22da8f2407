#!/bin/sh
# Interop: a checkpoint's /model, loaded under its Hugging Face names into a
# PyTorch GPT-2 forward (launch/hf_load.py), gives the trainer's own eval loss on
# the same val windows, with a vocabulary padded past the data's 256 tokens (the
# padding logits masked on both sides).  Needs Debian's python3-h5py and
# python3-torch; without them (make deps installs them) it prints SKIP and exits 77.
set -e
NAME=e2e_hfload
. tests/lib_e2e.sh
$PY -c 'import h5py, torch' 2>/dev/null ||
    skip "$PY cannot import h5py and torch (make deps installs python3-h5py, python3-torch)"
prep_bytes "$tmp/data"
cat > "$tmp/cfg.json" <<JSON
{"vocab_size": 320, "n_positions": 32, "n_embd": 64, "n_layer": 2, "n_head": 4,
 "batch_size": 8, "lr": 2e-3, "warmup_steps": 5, "max_steps": 30, "precision": "fp32",
 "eval_every": 30, "eval_batches": 10, "log_every": 100, "status_endpoint": "none",
 "control_endpoint": "none", "metrics_endpoint": "none", "data_dir": "$tmp/data", "out_dir": "$tmp/run"}
JSON
"$BUILD/trainer" --config "$tmp/cfg.json" 2>"$tmp/err" || { cat "$tmp/err"; fail "training failed"; }
val=$($PY -c 'import json,sys; print([r["val_loss"] for r in map(json.loads, open(sys.argv[1])) if r["type"] == "eval"][-1])' "$tmp/run/log.jsonl")
$PY launch/hf_load.py --ckpt "$tmp/run/$(cat "$tmp/run/latest")" --data "$tmp/data" --windows 80 \
    --expect "$val" || fail "PyTorch and the trainer disagree"
echo "PASS e2e_hfload (trainer val loss $val)"
