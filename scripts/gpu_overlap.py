#!/usr/bin/env python3
# gpu_overlap.py — what the GPU did in each training step, from a report's Chrome trace
# (`SPILLWAY_TRACK=1 SPILLWAY_KERNELS=1 spillway run --report DIR`, with "step N" marks as
# bench/torch/offload_train.py writes them): per step, the time the GPU spent computing (any
# kernel), copying host->device and device->host (CUPTI memcpy records), how much of the copying
# ran under compute, and how long the GPU did nothing (neither). Steps end where the next begins;
# the last step is dropped (no mark closes it). Under offload, also where the idle time falls:
# inside the pager's stalls (a launch waiting while its block is brought back) and before or after
# the step's peak of bytes on the host tier (forward evicts, backward brings back).
#   scripts/gpu_overlap.py TRACE_JSON [--warmup N] [--json OUT]
import argparse
import json
import re
import statistics
import sys


def union(iv):
    """Total length of a set of [start, end) intervals, and the merged intervals."""
    out = []
    for s, e in sorted(iv):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return sum(e - s for s, e in out), out


def intersect(a, b):
    """Length of the intersection of two merged interval lists."""
    i = j = 0
    tot = 0.0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi > lo:
            tot += hi - lo
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tot


def complement(merged, lo, hi):
    """The gaps of a merged interval list within [lo, hi)."""
    out, at = [], lo
    for s, e in merged:
        if s > at:
            out.append([at, min(s, hi)])
        at = max(at, e)
    if at < hi:
        out.append([at, hi])
    return out


def clip_merged(merged, lo, hi):
    return [[max(s, lo), min(e, hi)] for s, e in merged if e > lo and s < hi]


def clip(iv, lo, hi):
    return [(max(s, lo), min(e, hi)) for s, e in iv if e > lo and s < hi]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("trace")
    ap.add_argument("--warmup", type=int, default=2, help="steps left out of the medians")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    ev = json.load(open(a.trace))
    ev = ev["traceEvents"] if isinstance(ev, dict) else ev
    marks = sorted((e["ts"], int(m.group(1))) for e in ev if e.get("cat") == "mark"
                   and (m := re.fullmatch(r"step (\d+)", e.get("name", ""))))
    if len(marks) < 2:
        sys.exit(f"gpu_overlap.py: {a.trace} has fewer than two 'step N' marks")
    comp, h2d, d2h, stalls, host = [], [], [], [], []
    for e in ev:
        if e.get("cat") == "stall" and e.get("ph") == "X":
            stalls.append((e["ts"], e["ts"] + e.get("dur", 0)))
        if e.get("ph") == "C" and e.get("name", "").startswith("tier: host"):
            host.append((e["ts"], e.get("args", {}).get("MiB", 0)))
    _, stalls = union(stalls)
    host.sort()
    for e in ev:
        if e.get("cat") != "kernel" or e.get("ph") != "X":
            continue
        iv = (e["ts"], e["ts"] + e.get("dur", 0))
        name = e.get("name", "")
        # spillway_copy16: the pager's evictions written by a kernel (SPILLWAY_OFFLOAD_COPY=kernel)
        (h2d if name == "memcpy HtoD" else d2h if name in ("memcpy DtoH", "spillway_copy16")
         else comp if not name.startswith("memcpy") else []).append(iv)
    if not h2d and not d2h:
        print("gpu_overlap.py: no copies in the trace (a build before copy records?)",
              file=sys.stderr)
    rows = []
    for (t0, n), (t1, _) in zip(marks, marks[1:]):
        c_t, c = union(clip(comp, t0, t1))
        hd_t, hd = union(clip(h2d, t0, t1))
        dh_t, dh = union(clip(d2h, t0, t1))
        cp_t, cp = union(hd + dh)
        busy_t, busy = union(c + cp)
        idle = complement(busy, t0, t1)
        hs = [(v, t) for t, v in host if t0 <= t < t1]
        peak = max(hs)[1] if hs else t1  # the first sample at the step's largest host bytes
        rows.append({"step": n, "step_s": (t1 - t0) / 1e6, "compute_s": c_t / 1e6,
                     "h2d_s": hd_t / 1e6, "d2h_s": dh_t / 1e6, "copy_s": cp_t / 1e6,
                     "both_directions_s": intersect(hd, dh) / 1e6,
                     "copy_under_compute_s": intersect(cp, c) / 1e6,
                     "gpu_idle_s": (t1 - t0 - busy_t) / 1e6,
                     "idle_in_stalls_s": intersect(idle, clip_merged(stalls, t0, t1)) / 1e6,
                     "idle_before_host_peak_s": intersect(idle, [[t0, peak]]) / 1e6,
                     "host_peak_at_s": (peak - t0) / 1e6})
    keys = [k for k in rows[0] if k != "step"]
    w = max(len(k) for k in keys)
    print("step " + " ".join(f"{k:>{w}s}" for k in keys))
    for r in rows:
        print(f"{r['step']:4d} " + " ".join(f"{r[k]:{w}.3f}" for k in keys))
    steady = rows[a.warmup:] or rows
    med = {k: statistics.median(r[k] for r in steady) for k in keys}
    print("med  " + " ".join(f"{med[k]:{w}.3f}" for k in keys))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"steps": rows, "median": med, "warmup": a.warmup}, f, indent=1)


if __name__ == "__main__":
    main()
