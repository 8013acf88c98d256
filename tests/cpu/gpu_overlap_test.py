#!/usr/bin/env python3
# gpu_overlap_test.py — scripts/gpu_overlap.py on a made-up Chrome trace whose answer is known:
# two steps with compute, copies each way, copies under compute and idle time.
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def k(name, ts, dur):
    return {"name": name, "cat": "kernel", "ph": "X", "ts": ts, "dur": dur, "pid": 1, "tid": 1000}


def mark(n, ts):
    return {"name": f"step {n}", "cat": "mark", "ph": "i", "s": "p", "ts": ts, "pid": 1, "tid": 1}


def main():
    # Times in us. Step 0: [0, 1000): compute [0,400) and [300,500) (union 500), HtoD [400,700),
    # DtoH [600,800) (both directions [600,700) = 100; copy union [400,800) = 400, under compute
    # [400,500) = 100), and a kernel crossing into step 1 ([900,1100): 100 in each step), so
    # compute 600 and idle 1000 - busy ([0,800) + [900,1000)) = 100. Step 1: [1000, 3000): that
    # kernel's 100, DtoH [2000, 2500); idle 2000 - 100 - 500 = 1400.
    ev = [mark(0, 0), mark(1, 1000), mark(2, 3000),
          k("gemm", 0, 400), k("gelu", 300, 200), k("memcpy HtoD", 400, 300),
          k("memcpy DtoH", 600, 200), k("gemm", 900, 200), k("memcpy DtoH", 2000, 500),
          {"name": "step 9x", "cat": "mark", "ph": "i", "ts": 5, "pid": 1, "tid": 1},
          # A stall [850, 950): step 0's idle [800, 900) is half inside it. Host-tier bytes peak
          # at 850 in step 0 (idle before: [800, 850)) and at 1500 in step 1 ([1100, 1500)).
          {"name": "stall: host->device", "cat": "stall", "ph": "X", "ts": 850, "dur": 100,
           "pid": 1, "tid": 7}] + [
          {"name": "tier: host", "ph": "C", "ts": t, "pid": 1, "tid": 0, "args": {"MiB": v}}
          for t, v in ((100, 5), (850, 9), (950, 1), (1500, 3), (2600, 2))]
    with tempfile.TemporaryDirectory() as d:
        tr, out = os.path.join(d, "trace.json"), os.path.join(d, "o.json")
        json.dump({"traceEvents": ev}, open(tr, "w"))
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gpu_overlap.py"), tr,
                        "--warmup", "0", "--json", out], check=True, capture_output=True)
        r = json.load(open(out))["steps"]
        assert [s["step"] for s in r] == [0, 1], r
        want0 = {"step_s": 1e-3, "compute_s": 6e-4, "h2d_s": 3e-4, "d2h_s": 2e-4, "copy_s": 4e-4,
                 "both_directions_s": 1e-4, "copy_under_compute_s": 1e-4, "gpu_idle_s": 1e-4,
                 "idle_in_stalls_s": 5e-5, "idle_before_host_peak_s": 5e-5,
                 "host_peak_at_s": 8.5e-4}
        want1 = {"step_s": 2e-3, "compute_s": 1e-4, "h2d_s": 0, "d2h_s": 5e-4, "copy_s": 5e-4,
                 "both_directions_s": 0, "copy_under_compute_s": 0, "gpu_idle_s": 1.4e-3,
                 "idle_in_stalls_s": 0, "idle_before_host_peak_s": 4e-4, "host_peak_at_s": 5e-4}
        for got, want in ((r[0], want0), (r[1], want1)):
            for key, v in want.items():
                assert abs(got[key] - v) < 1e-9, (got["step"], key, got[key], v)
        # Fewer than two step marks: a clear error, not an empty table.
        json.dump({"traceEvents": ev[:1]}, open(tr, "w"))
        p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gpu_overlap.py"), tr],
                           capture_output=True, text=True)
        assert p.returncode != 0 and "fewer than two" in p.stderr, p
    print("gpu_overlap_test: ok")


if __name__ == "__main__":
    main()
