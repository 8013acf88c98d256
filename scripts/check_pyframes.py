#!/usr/bin/env python3
# check_pyframes.py — GPU check of Python call sites under PyTorch: in a report.json written by
# `spillway run --report DIR -- python3 examples/train_gpt.py ...`, every one of the largest
# blocks at the peak must carry a call site, and each call site must either have Python frames
# naming the training script (PyTorch allocates with the GIL released: these come from the
# GIL-free frame reader) or come from PyTorch's autograd thread, which runs no Python (its C++
# frames hold torch::autograd::Engine::thread_main; the summary names the autograd node).
# Prints each block's summary line.
#   scripts/check_pyframes.py REPORT_JSON [SCRIPT_NAME]
import json
import sys

report = json.load(open(sys.argv[1]))
script = sys.argv[2] if len(sys.argv) > 2 else "train_gpt.py"
blocks = [b for d in report["devices"] for b in d.get("largest_at_peak", [])]
py, autograd, bad = 0, 0, 0
for b in blocks:
    frames = b.get("callsite", {}).get("frames", [])
    if any(f["lang"] == "python" and script in f["frame"] for f in frames):
        py += 1
        kind = "python"
    elif any("torch::autograd::Engine::thread_main" in f["frame"] for f in frames):
        autograd += 1
        kind = "autograd thread"
    else:
        bad += 1
        kind = "NEITHER"
    print(f"{b['requested']:>12} B  {kind:15s} {b.get('callsite', {}).get('summary', '(no call site)')}")
print(f"{len(blocks)} largest blocks at the peak: {py} with Python frames in {script}, "
      f"{autograd} made on PyTorch's autograd thread, {bad} with neither")
sys.exit(0 if blocks and py > 0 and bad == 0 else 1)
