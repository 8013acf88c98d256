#!/usr/bin/env python3
"""collect.py — merges Spillway's allocator benchmark outputs into one allocator.json and
prints a short table.

Inputs (all optional; what is missing becomes null):
  --pair    pair_bench.json    Google Benchmark JSON of bench/pair_bench
  --random  random_bench.json  Google Benchmark JSON of bench/random_bench
  --torch   torch_pair.json    {"pytorch": {"1": {"512": ns, ...}, "8": {...}}} from
                               bench/torch/build_and_run.sh
  --checks  torch_checks.json  {"fragmentation": {...}, "step_time_ratio": x} from the PyTorch
                               checks script
  --compact frag_compact.json  train_gpt.py's JSON of the fragmentation workload under
                               SPILLWAY_RESERVE_POLICY=compact: reported as
                               "fragmentation_compact_policy" (not part of the targets, which
                               judge the default policy)
Output: --out allocator.json (default), with --commit and --gpu recorded as given.

Benchmark names (set by pair_bench.cpp / random_bench.cpp; Google Benchmark appends
"/repeats:N", "/real_time", "/threads:T" and, for aggregates, "_median" etc.):
  pair/<allocator>/<size_bytes>      allocator: spillway | cudaMallocAsync | cudaMalloc
  random/<allocator>/<max_size_bytes> allocator: spillway | cudaMallocAsync
Only the "median" aggregates are read (run_type "aggregate", aggregate_name "median").
The thread count comes from the JSON field "threads".

pair_ns[allocator][threads][size] = median real time per pair, in ns, PER THREAD: Google
Benchmark reports wall time / (threads x iterations per thread) for a threaded run, so the
figure is multiplied by the thread count (for 1 thread it is unchanged). torch_pair_bench
reports the same quantity. random_allocations[allocator][max_size] = median "ops_per_s".

fragmentation: copied from torch_checks.json. Expected shape: {config_name: value}, where
value is peak reserved / peak allocated, either a number or a dict holding it under one of
"ratio", "reserved_over_allocated", "peak_reserved_over_peak_allocated" (or its only numeric
entry). Names containing "spillway" are Spillway's figures; all others are PyTorch's.
step_time_ratio: Spillway step time / native step time; a number, or a dict whose largest
numeric value is used.

targets (null where the data is missing):
  spillway_pair_le_100ns           Spillway pair <= 100 ns at every size, 1 thread
  spillway_10x_cudaMallocAsync     Spillway >= 10x faster than cudaMallocAsync at every size
                                   and every thread count both have
  spillway_faster_than_pytorch     Spillway faster than PyTorch's caching allocator at every
                                   size and every thread count both have
  fragmentation_le_1.05_and_below_pytorch   every Spillway figure <= 1.05 and below every
                                   PyTorch figure
  step_time_ratio_le_1.02          step_time_ratio <= 1.02
"""

import argparse
import datetime
import json
import math
import os
import sys

PAIR_ALLOCATORS = ["spillway", "cudaMallocAsync", "cudaMalloc", "pytorch"]
RANDOM_ALLOCATORS = ["spillway", "cudaMallocAsync"]
TIME_TO_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
FRAG_KEYS = ("ratio", "reserved_over_allocated", "peak_reserved_over_peak_allocated")


def load_json(path, what, notes):
    if not path:
        return None
    if not os.path.exists(path):
        notes.append(f"{what}: {path} not found")
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        notes.append(f"{what}: cannot read {path}: {e}")
        return None


def parse_gbench(doc, family, notes):
    """Yields (allocator, arg, threads, entry) for each median aggregate of `family`."""
    if doc is None:
        return
    for b in doc.get("benchmarks", []):
        run_name = b.get("run_name") or b.get("name", "")
        parts = run_name.split("/")
        if len(parts) < 3 or parts[0] != family:
            continue
        if b.get("error_occurred"):
            notes.append(f"{b.get('name')}: error: {b.get('error_message')}")
            continue
        if b.get("run_type") != "aggregate" or b.get("aggregate_name") != "median":
            continue
        try:
            arg = int(parts[2])
        except ValueError:
            notes.append(f"{b.get('name')}: unexpected name")
            continue
        yield parts[1], arg, int(b.get("threads", 1)), b


def collect_pair(doc, torch_doc, notes):
    pair = {a: None for a in PAIR_ALLOCATORS}
    for alloc, size, threads, b in parse_gbench(doc, "pair", notes):
        ns = float(b["real_time"]) * TIME_TO_NS.get(b.get("time_unit", "ns"), 1.0) * threads
        pair.setdefault(alloc, None)
        if pair[alloc] is None:
            pair[alloc] = {}
        pair[alloc].setdefault(str(threads), {})[str(size)] = round(ns, 2)
    if torch_doc is not None:
        data = torch_doc.get("pytorch")
        if isinstance(data, dict):
            pair["pytorch"] = {
                str(t): {str(s): (None if v is None else float(v)) for s, v in sizes.items()}
                for t, sizes in data.items()
            }
        else:
            notes.append("torch JSON has no 'pytorch' key")
    # Sort sizes numerically for readability.
    for alloc, by_threads in pair.items():
        if by_threads:
            pair[alloc] = {
                t: dict(sorted(sizes.items(), key=lambda kv: int(kv[0])))
                for t, sizes in sorted(by_threads.items(), key=lambda kv: int(kv[0]))
            }
    return pair


def collect_random(doc, notes):
    rnd = {a: None for a in RANDOM_ALLOCATORS}
    for alloc, max_size, _threads, b in parse_gbench(doc, "random", notes):
        if "ops_per_s" not in b:
            notes.append(f"{b.get('name')}: no ops_per_s counter")
            continue
        if rnd.get(alloc) is None:
            rnd[alloc] = {}
        rnd[alloc][str(max_size)] = round(float(b["ops_per_s"]), 1)
    for alloc, v in rnd.items():
        if v:
            rnd[alloc] = dict(sorted(v.items(), key=lambda kv: int(kv[0])))
    return rnd


def frag_value(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, dict):
        for k in FRAG_KEYS:
            if isinstance(v.get(k), (int, float)):
                return float(v[k])
        nums = [x for x in v.values() if isinstance(x, (int, float)) and not isinstance(x, bool)]
        if len(nums) == 1:
            return float(nums[0])
    return None


def ratio_value(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, dict):
        nums = [float(x) for x in v.values()
                if isinstance(x, (int, float)) and not isinstance(x, bool)]
        return max(nums) if nums else None
    return None


PAIR_SIZES = ["512", "65536", "1048576", "16777216", "268435456"]


def beats(sw, other, factor):
    """True if Spillway is `factor` x faster than `other` at every (threads, size) point that
    `other` has (a point where Spillway has no figure, e.g. it errored, counts as a miss);
    None if either table is missing."""
    if not sw or not other:
        return None
    points = 0
    for t, sizes in other.items():
        for s, vo in sizes.items():
            if vo is None:
                continue
            vs = sw.get(t, {}).get(s)
            if vs is None or not vo >= factor * vs:
                return False
            points += 1
    return True if points else None


def compute_targets(pair, fragmentation, step_time_ratio):
    t = {}
    sw = pair.get("spillway")
    sw1 = (sw or {}).get("1")
    if not sw1:
        t["spillway_pair_le_100ns"] = None
    else:  # a size without a figure (errored) counts as a miss
        t["spillway_pair_le_100ns"] = all(
            sw1.get(s) is not None and sw1[s] <= 100.0 for s in PAIR_SIZES)

    t["spillway_10x_cudaMallocAsync"] = beats(sw, pair.get("cudaMallocAsync"), 10.0)
    # "faster" is strict: Spillway's time must be below PyTorch's.
    t["spillway_faster_than_pytorch"] = beats(sw, pair.get("pytorch"), 1.0 + 1e-12)

    frag_ok = None
    if isinstance(fragmentation, dict):
        mine = [frag_value(v) for k, v in fragmentation.items() if "spillway" in k.lower()]
        theirs = [frag_value(v) for k, v in fragmentation.items() if "spillway" not in k.lower()]
        mine = [x for x in mine if x is not None]
        theirs = [x for x in theirs if x is not None]
        if mine and theirs:
            frag_ok = all(m <= 1.05 for m in mine) and max(mine) < min(theirs)
    t["fragmentation_le_1.05_and_below_pytorch"] = frag_ok

    r = ratio_value(step_time_ratio)
    t["step_time_ratio_le_1.02"] = None if r is None else r <= 1.02
    return t


def fmt_ns(v):
    if v is None:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f}ms"
    if v >= 1e3:
        return f"{v / 1e3:.2f}us"
    return f"{v:.1f}ns"


def print_table(result):
    pair = result["pair_ns"]
    sizes = sorted({int(s) for a in pair.values() if a for t in a.values() for s in t},
                   key=int)
    threads = sorted({int(t) for a in pair.values() if a for t in a}, key=int)
    print(f"Allocator benchmarks — {result['gpu'] or '?'} — commit {result['commit'] or '?'} "
          f"— {result['date']}")
    if sizes:
        print("\nmalloc+free pair, median ns per pair per thread")
        header = f"{'allocator':<16}{'thr':>4}" + "".join(f"{human(s):>11}" for s in sizes)
        print(header)
        for alloc, by_t in pair.items():
            for t in threads:
                row = (by_t or {}).get(str(t))
                if row is None:
                    continue
                print(f"{alloc:<16}{t:>4}" + "".join(f"{fmt_ns(row.get(str(s))):>11}"
                                                      for s in sizes))
    rnd = result["random_allocations"]
    msizes = sorted({int(s) for a in rnd.values() if a for s in a}, key=int)
    if msizes:
        print("\nrandom allocations (RMM-style), median ops/s")
        print(f"{'allocator':<16}" + "".join(f"{'max ' + human(s):>14}" for s in msizes))
        for alloc, row in rnd.items():
            if row:
                print(f"{alloc:<16}" + "".join(
                    f"{(row.get(str(s)) or float('nan')):>14,.0f}" for s in msizes))
    print(f"\nfragmentation: {json.dumps(result['fragmentation'])}")
    print(f"step_time_ratio: {json.dumps(result['step_time_ratio'])}")
    print("\ntargets:")
    for k, v in result["targets"].items():
        print(f"  {k:<42} {'n/a' if v is None else ('PASS' if v else 'FAIL')}")
    for n in result["notes"]:
        print(f"note: {n}")


def human(n):
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return f"{n}B"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default="pair_bench.json")
    ap.add_argument("--random", default="random_bench.json")
    ap.add_argument("--torch", default="torch_pair.json")
    ap.add_argument("--checks", default="torch_checks.json")
    ap.add_argument("--compact", default=None)
    ap.add_argument("--out", default="allocator.json")
    ap.add_argument("--commit", default=None)
    ap.add_argument("--gpu", default=None)
    args = ap.parse_args(argv)

    notes = []
    pair_doc = load_json(args.pair, "pair", notes)
    random_doc = load_json(args.random, "random", notes)
    torch_doc = load_json(args.torch, "torch", notes)
    checks = load_json(args.checks, "checks", notes) or {}

    pair = collect_pair(pair_doc, torch_doc, notes)
    rnd = collect_random(random_doc, notes)
    fragmentation = checks.get("fragmentation")
    step_time_ratio = checks.get("step_time_ratio")
    if isinstance(step_time_ratio, float) and math.isnan(step_time_ratio):
        step_time_ratio = None

    compact = None
    if (doc := load_json(args.compact, "compact", notes)) is not None:
        stats = doc.get("spillway") or {}
        pa, pr = stats.get("peak_allocated_bytes"), stats.get("peak_reserved_bytes")
        compact = {"ratio": pr / pa if pa and pr else None, "peak_reserved": pr,
                   "peak_allocated": pa, "median_step_s": doc.get("median_step_s")}

    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "commit": args.commit,
        "gpu": args.gpu,
        "pair_ns": pair,
        "random_allocations": rnd,
        "fragmentation": fragmentation,
        "fragmentation_compact_policy": compact,
        "step_time_ratio": step_time_ratio,
        "step_time": checks.get("step_time"),
        "targets": compute_targets(pair, fragmentation, step_time_ratio),
        "notes": notes,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print_table(result)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
