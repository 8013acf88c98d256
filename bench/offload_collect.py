#!/usr/bin/env python3
# offload_collect.py — bench/results/offload.json from one `scripts/gpu-check.sh
# offload,offload_torch` run: offload_bench.json (host and NVMe throughput against pinned memcpy
# and raw io_uring) and the training runs of bench/torch/offload_train.py (ga and activations,
# each unconstrained and at half its peak; activations with save_on_cpu and Spillway at
# save_on_cpu's peak). Definitions follow issue 4; see docs/offload.md.
#   offload_collect.py RUN_DIR --out offload.json --commit C --gpu NAME
import argparse
import os
import datetime
import json
import re
from pathlib import Path


def load(d, name):
    p = Path(d) / name
    return json.loads(p.read_text()) if p.exists() else None


def sweep_into(res, free, bud, d, pattern):
    """The sweep (gpu-check GA_SWEEP_RATIOS): each footprint/budget ratio tried (the main run and
    the files matching `pattern`), and the largest at which throughput stayed >= 0.9 (None when
    none did; only the ratios tried are known)."""
    sweep = [{"footprint_over_budget": res["footprint_over_budget"],
              "throughput_ratio": res["throughput_ratio"],
              "losses_match": res["losses_match"], "optimizer_steps": len(bud["losses"])}]
    for p in sorted(Path(d).glob(pattern)):
        r = json.loads(p.read_text())
        n = len(r["losses"])
        # gpu-check GA_RETURN_USES: a run with SPILLWAY_OFFLOAD_RETURN_USES set (name ..._uX.json)
        u = re.search(r"_u([0-9.]+)\.json$", p.name)
        sweep.append({"return_uses": float(u.group(1)) if u else None,"footprint_over_budget": free["spillway"]["peak_reserved_bytes"] / int(r["budget"]),
                      "throughput_ratio": r["tokens_per_s"] / free["tokens_per_s"],
                      "losses_match": r["losses"] == free["losses"][:n], "optimizer_steps": n,
                      "stall_fraction": stall_fraction(r), "prefetch_hit_rate": hit_rate(r),
                      "offload": r["offload"]})
    sweep.sort(key=lambda x: x["footprint_over_budget"])
    ok = [x["footprint_over_budget"] for x in sweep
          if x["throughput_ratio"] >= 0.9 and x["losses_match"] and x.get("return_uses") is None]
    res["sweep"] = sweep
    res["max_footprint_over_budget_at_0_9"] = max(ok) if ok else None
    res["max_footprint_note"] = ("largest of the ratios tried (not bisected)" if ok else
                                 "no ratio tried kept throughput >= 0.9")


def stall_fraction(run):
    o = run["offload"]
    return o["stall_ns"] / 1e9 / sum(run["step_s"]) if run.get("step_s") else None


def hit_rate(run):
    o = run["offload"]
    return o["prefetches"] / o["fetches"] if o["fetches"] else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--out", required=True)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--gpu", required=True)
    a = ap.parse_args()
    d = a.run_dir
    bench = load(d, "offload_bench.json")
    pcie = bench["pcie_gbps"] if bench else None
    res = {"date": datetime.date.today().isoformat(), "commit": a.commit, "gpu": a.gpu,
           "pcie_gbps": pcie}
    if bench:
        res["host_gbps"] = {
            "tracked": bench["host_gbps_tracked"], "strict": bench["host_gbps"],
            "over_pcie_tracked": bench["host_over_pcie_tracked"],
            "over_pcie_strict": bench["host_over_pcie"],
            "target": "evict and prefetch >= 0.9 of pinned memcpy",
            "met": min(bench["host_over_pcie_tracked"].values()) >= 0.9,
            "remap_s_per_round_trip": bench.get("remap_s_per_round_trip"),
            "remap_us_per_page_by_threads": bench.get("remap_us_per_page_by_threads"),
            "launch_while_remapping": bench.get("launch_while_remapping"),
            "remap_us_per_2mib_by_chunk_mib": bench.get("remap_us_per_2mib_by_chunk_mib"),
            "block_bytes": bench["block_bytes"], "blocks": bench["blocks"],
            "span_mib": bench.get("span_mib")}  # 0: spans off; absent up to 1a6c3ad (off)
        if "nvme" in bench:
            n = bench["nvme"]
            res["nvme"] = {"nvme_gbps": n["nvme_gbps"], "nvme_raw_gbps": n["nvme_raw_gbps"],
                           "ratio": n["ratio"], "target": ">= 0.9 of raw", "met":
                           min(n["ratio"].values()) >= 0.9,
                           "note": "blocks of offload_bench through the NVMe tier (strict "
                                   "safety), not the ga model: losses_match not measured"}
    free, bud = load(d, "ga_free.json"), load(d, "ga_budget.json")
    if free and bud:
        budget = int(bud["budget"])
        res["ga"] = {
            "params": free["params"], "accum": free["accum"], "optimizer_steps": len(bud["losses"]),
            "native_peak_reserved": free["spillway"]["peak_reserved_bytes"],
            "budget": budget, "peak_reserved_under_budget": bud["spillway"]["peak_reserved_bytes"],
            "footprint_over_budget": free["spillway"]["peak_reserved_bytes"] / budget,
            "tokens_per_s": {"unconstrained": free["tokens_per_s"], "budget": bud["tokens_per_s"]},
            "throughput_ratio": bud["tokens_per_s"] / free["tokens_per_s"],
            "losses_match": free["losses"] == bud["losses"],
            "stall_fraction": stall_fraction(bud), "prefetch_hit_rate": hit_rate(bud),
            "offload": bud["offload"],
            "target": "throughput_ratio >= 0.9", "met": bud["tokens_per_s"] / free["tokens_per_s"] >= 0.9}
        sweep_into(res["ga"], free, bud, d, "ga_budget_r*.json")
    ff, fb = load(d, "ga_fused_free.json"), load(d, "ga_fused_budget.json")
    if ff and fb:
        res["ga_fused"] = {
            "note": "the ga model with fused AdamW (one kernel and one pass over the states a "
                    "step; ga uses foreach AdamW, PyTorch's default, with five passes)",
            "optimizer_steps": len(fb["losses"]),
            "footprint_over_budget": ff["spillway"]["peak_reserved_bytes"] / int(fb["budget"]),
            "tokens_per_s": {"unconstrained": ff["tokens_per_s"], "budget": fb["tokens_per_s"]},
            "throughput_ratio": fb["tokens_per_s"] / ff["tokens_per_s"],
            "losses_match": ff["losses"] == fb["losses"],
            "stall_fraction": stall_fraction(fb), "prefetch_hit_rate": hit_rate(fb),
            "offload": fb["offload"]}
        sweep_into(res["ga_fused"], ff, fb, d, "ga_fused_budget_r*.json")
    gn = load(d, "ga_nvme.json")
    rep = load(d, "ga_nvme_report/report.json")
    if gn and gn.get("optimizer", "foreach") == "fused":
        free = ff  # compared with the unconstrained run of the same optimizer
    if gn and free:
        n = len(gn["losses"])
        traffic = {(t["from"], t["to"]): t for t in (rep or {}).get("offload", {}).get("traffic", [])}
        w, r = traffic.get(("host", "nvme"), {}), traffic.get(("nvme", "host"), {})
        raw = res.get("nvme", {}).get("nvme_raw_gbps")
        model = {"host_limit": os.environ.get("GA_NVME_HOST_LIMIT"), "optimizer_steps": n,
                 "optimizer": gn.get("optimizer", "foreach"),
                 "losses_match": gn["losses"] == free["losses"][:n],
                 "throughput_ratio": gn["tokens_per_s"] / free["tokens_per_s"],
                 "bytes_to_nvme": gn["offload"]["bytes_to_nvme"],
                 "bytes_from_nvme": gn["offload"]["bytes_from_nvme"],
                 "nvme_gbps": {"write": w.get("gbps"), "read": r.get("gbps")},
                 "stall_fraction": stall_fraction(gn), "prefetch_hit_rate": hit_rate(gn)}
        if raw and w.get("gbps") and r.get("gbps"):
            model["ratio"] = {"write": w["gbps"] / raw["write"], "read": r["gbps"] / raw["read"]}
        res.setdefault("nvme", {})["ga_model"] = model
    free, bud = load(d, "activations_free.json"), load(d, "activations_budget.json")
    if free and bud:
        steps = len(bud["losses"])
        moved = (bud["offload"]["bytes_to_host"] + bud["offload"]["bytes_from_host"]) / steps
        gbps = (pcie["d2h"] + pcie["h2d"]) / 2 if pcie else 55.0
        compute = free["median_step_s"]
        link_bound = max(compute, moved / (gbps * 1e9))
        res["activations"] = {
            "params": free["params"], "steps": steps,
            "native_peak_reserved": free["spillway"]["peak_reserved_bytes"],
            "budget": int(bud["budget"]),
            "peak_reserved_under_budget": bud["spillway"]["peak_reserved_bytes"],
            "bytes_moved_per_step": moved, "compute_s_per_step": compute, "pcie_gbps_used": gbps,
            "link_bound_s": link_bound, "step_s": bud["median_step_s"],
            "link_efficiency": link_bound / bud["median_step_s"],
            "losses_match": free["losses"] == bud["losses"],
            "stall_fraction": stall_fraction(bud), "prefetch_hit_rate": hit_rate(bud),
            "offload": bud["offload"], "target": "link_efficiency >= 0.8",
            "met": link_bound / bud["median_step_s"] >= 0.8}
    soc, spw = load(d, "soc.json"), load(d, "spillway_at_soc.json")
    if soc and spw:
        res["vs_save_on_cpu"] = {
            "save_on_cpu": {"peak_reserved": soc["spillway"]["peak_reserved_bytes"],
                            "step_s": soc["median_step_s"]},
            "spillway": {"budget": int(spw["budget"]),
                         "peak_reserved": spw["spillway"]["peak_reserved_bytes"],
                         "step_s": spw["median_step_s"],
                         "losses_match_unconstrained": free is not None and spw["losses"] == free["losses"],
                         "stall_fraction": stall_fraction(spw), "prefetch_hit_rate": hit_rate(spw)},
            "speedup": soc["median_step_s"] / spw["median_step_s"],
            "target": "Spillway >= 1.2x faster", "met": soc["median_step_s"] / spw["median_step_s"] >= 1.2}
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    for k in ("host_gbps", "nvme", "ga", "ga_fused", "activations", "vs_save_on_cpu"):
        if k in res:
            v = res[k]
            short = {x: v[x] for x in ("throughput_ratio", "link_efficiency", "speedup", "met",
                                       "over_pcie_tracked", "ratio", "losses_match",
                                       "max_footprint_over_budget_at_0_9")
                     if x in v}
            print(f"{k:16s} {short}")


if __name__ == "__main__":
    main()
