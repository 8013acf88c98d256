#!/usr/bin/env python3
# kernel_times.py — where GPU time goes, from the kernel slices of reports' Chrome traces
# (`SPILLWAY_TRACK=1 SPILLWAY_KERNELS=1 spillway run --report DIR`): total time, count and mean
# per kernel name (names shortened: template arguments dropped), for one report or for two side
# by side (e.g. unconstrained and under an offload budget, to see which kernels slow down when
# they work on host memory).
#   scripts/kernel_times.py TRACE_JSON [TRACE_JSON_B] [--top N] [--json OUT]
import argparse
import json
import re
import subprocess
from collections import defaultdict


def demangle(names):
    """Mangled C++ names through c++filt when it is there (else unchanged)."""
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True,
                             check=True).stdout.splitlines()
        return dict(zip(names, out)) if len(out) == len(names) else {n: n for n in names}
    except (OSError, subprocess.CalledProcessError):
        return {n: n for n in names}


def short(name):
    """The kernel's function name: no return type, scope, template arguments or parameters
    (so every instantiation of one kernel template is counted together)."""
    n = (name[5:] if name.startswith("void ") else name).replace("(anonymous namespace)", "anon")
    n = re.sub(r"\(.*\)$", "", n)  # the parameter list
    while re.search(r"<[^<>]*>", n):
        n = re.sub(r"<[^<>]*>", "", n)  # template arguments, innermost first
    return n.split("::")[-1][:60] or name[:60]


def load(path):
    ev = json.load(open(path))
    ev = ev["traceEvents"] if isinstance(ev, dict) else ev
    k = [e for e in ev if e.get("cat") == "kernel" and e.get("ph") == "X"]
    names = demangle(sorted({e["name"] for e in k}))
    tot, cnt = defaultdict(float), defaultdict(int)
    for e in k:
        n = short(names[e["name"]])
        tot[n] += e["dur"] / 1e6  # us -> s
        cnt[n] += 1
    return tot, cnt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b", nargs="?")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--json")
    args = ap.parse_args()
    ta, ca = load(args.a)
    tb, cb = load(args.b) if args.b else ({}, {})
    names = sorted(set(ta) | set(tb), key=lambda n: -max(ta.get(n, 0), tb.get(n, 0)))
    print(f"kernel time: A {sum(ta.values()):.3f} s" + (f", B {sum(tb.values()):.3f} s" if args.b else ""))
    for n in names[:args.top]:
        line = f"  {n:60s} A {ta.get(n, 0):8.3f} s {ca.get(n, 0):6d}x"
        if args.b:
            line += f"   B {tb.get(n, 0):8.3f} s {cb.get(n, 0):6d}x"
            if ta.get(n) and tb.get(n):
                line += f"   B/A {tb[n] / ta[n]:6.2f}"
        print(line)
    if args.json:
        json.dump({"a": {"total_s": sum(ta.values()), "by_kernel": ta, "count": ca},
                   "b": {"total_s": sum(tb.values()), "by_kernel": tb, "count": cb}},
                  open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
