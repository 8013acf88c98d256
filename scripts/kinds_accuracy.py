#!/usr/bin/env python3
"""kinds_accuracy.py — scores the kinds of tensor Spillway inferred (report.json of a run with
SPILLWAY_TRACK=1) against what PyTorch knew in that run (train_gpt.py --kinds-truth FILE):
precision and recall per kind, by block count and by bytes, and the tracker's coverage (the
share of blocks, and of bytes, that some launch, copy or set referenced).

  scripts/kinds_accuracy.py REPORT.json TRUTH.jsonl [--out kinds.json]

A truth line names a tensor's storage address at a wall-clock instant; it is matched to the
block that started at that address and was live then. Blocks no truth line names are
"temporary" in the truth (workspaces, intermediates not saved for backward, the batch's copy).
"""
import argparse
import bisect
import json
import sys
from collections import defaultdict

SCORED = ["parameter", "gradient", "optimizer_state", "activation"]
# A block named with several kinds (should not happen) takes the first of these.
PRIORITY = ["parameter", "optimizer_state", "gradient", "activation"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report")
    ap.add_argument("truth")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    rep = json.load(open(args.report))
    kinds = rep.get("kinds")
    if not kinds:
        sys.exit(f"{args.report}: no kinds (was the run made with SPILLWAY_TRACK=1 and a log?)")
    names = kinds["names"]
    origin = rep["origin_unix_ns"]
    blocks = kinds["blocks"]  # [process, addr, requested, alloc_ns, free_ns, kind, accesses]
    by_addr = defaultdict(list)
    for i, b in enumerate(blocks):
        by_addr[b[1]].append((b[3], b[4], i))
    for v in by_addr.values():
        v.sort()

    truth = defaultdict(set)
    lines = unmatched = 0
    with open(args.truth) as f:
        for line in f:
            e = json.loads(line)
            lines += 1
            t = e["t"] - origin
            cands = by_addr.get(e["ptr"], [])
            j = bisect.bisect_right(cands, (t, float("inf"), 0)) - 1
            if j >= 0 and cands[j][0] <= t <= cands[j][1]:
                truth[cands[j][2]].add(e["kind"])
            else:
                unmatched += 1

    def truth_of(i):
        ks = truth.get(i)
        if not ks:
            return "temporary"
        return next(k for k in PRIORITY if k in ks)

    res = {"blocks": len(blocks), "truth_lines": lines, "truth_unmatched": unmatched,
           "method": kinds["method"], "optimizer_steps": kinds["optimizer_steps"],
           "precision": {}, "recall": {}, "precision_bytes": {}, "recall_bytes": {},
           "counts": {}, "confusion": defaultdict(lambda: defaultdict(int))}
    for k in SCORED + ["temporary"]:
        tp = pred = tru = 0
        tpb = predb = trub = 0
        for i, b in enumerate(blocks):
            p = names[b[5]] == k
            t = truth_of(i) == k
            tp += p and t
            pred += p
            tru += t
            tpb += b[2] if p and t else 0
            predb += b[2] if p else 0
            trub += b[2] if t else 0
        res["precision"][k] = tp / pred if pred else None
        res["recall"][k] = tp / tru if tru else None
        res["precision_bytes"][k] = tpb / predb if predb else None
        res["recall_bytes"][k] = tpb / trub if trub else None
        res["counts"][k] = {"true_positive": tp, "predicted": pred, "truth": tru}
    for i, b in enumerate(blocks):
        res["confusion"][truth_of(i)][names[b[5]]] += 1
    res["confusion"] = {k: dict(v) for k, v in res["confusion"].items()}
    touched = [b for b in blocks if b[6] > 0]
    res["coverage_blocks"] = len(touched) / len(blocks) if blocks else None
    total = sum(b[2] for b in blocks)
    res["coverage_bytes"] = sum(b[2] for b in touched) / total if total else None
    res["targets_met"] = all(
        res[m][k] is not None and res[m][k] >= 0.95 for k in SCORED for m in ("precision", "recall"))

    print(f"kinds: {res['method']}; {len(blocks)} blocks, {lines} truth lines "
          f"({unmatched} unmatched)")
    print(f"{'kind':<16} {'precision':>9} {'recall':>7} {'prec(B)':>8} {'rec(B)':>7}  counts")
    fmt = lambda v: "   -" if v is None else f"{v:.3f}"  # noqa: E731
    for k in SCORED + ["temporary"]:
        c = res["counts"][k]
        print(f"{k:<16} {fmt(res['precision'][k]):>9} {fmt(res['recall'][k]):>7} "
              f"{fmt(res['precision_bytes'][k]):>8} {fmt(res['recall_bytes'][k]):>7}  "
              f"tp {c['true_positive']} pred {c['predicted']} truth {c['truth']}")
    print(f"confusion (truth -> inferred): {json.dumps(res['confusion'])}")
    print(f"coverage: {fmt(res['coverage_blocks'])} of blocks, {fmt(res['coverage_bytes'])} of "
          f"bytes referenced by some launch, copy or set")
    print(f"targets (>= 0.95 precision and recall for {', '.join(SCORED)}): "
          f"{'met' if res['targets_met'] else 'NOT met'}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
