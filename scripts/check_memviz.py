#!/usr/bin/env python3
# check_memviz.py — reads a Spillway memory_viz snapshot (snapshot.pickle from `spillway report
# --format all` or SPILLWAY_REPORT) with PyTorch's own reader, torch.cuda._memory_viz: runs
# segsum and trace_plot on it and writes the trace plot HTML next to it. Needs PyTorch (the GPU
# machine has it). Exit 0 when both ran, 1 with the Python error otherwise.
import pickle
import sys
from pathlib import Path


def main():
    if len(sys.argv) != 2:
        print("usage: check_memviz.py SNAPSHOT.pickle", file=sys.stderr)
        return 2
    path = Path(sys.argv[1])
    try:
        from torch.cuda import _memory_viz as mv
    except ImportError as e:
        print(f"check_memviz: PyTorch is needed: {e}", file=sys.stderr)
        return 1
    with open(path, "rb") as f:
        snapshot = pickle.load(f)
    summary = mv.segsum(snapshot)
    print(summary[:2000])
    html = mv.trace_plot(snapshot)
    out = path.with_name("trace_plot.html")
    out.write_text(html)
    print(f"check_memviz: segsum and trace_plot ran on {path}; wrote {out} ({len(html)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
