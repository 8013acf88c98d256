#!/usr/bin/env python3
# offload_train.py — the training workloads of the offload benchmarks (bench/offload.sh):
#   ga:          a parameter-heavy GPT-style model, AdamW, gradient accumulation over --accum
#                micro-batches (optimizer state is idle between optimizer steps);
#   activations: an activation-heavy one (wide, long sequences, large batch).
# Deterministic settings (same losses run to run). Prints one line per optimizer step and writes
# --json with the losses, step times, tokens/s and peaks. --save-on-cpu wraps the forward pass in
# torch.autograd.graph.save_on_cpu(pin_memory=True), the anchor of `vs_save_on_cpu`.
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from train_gpt import GPT  # noqa: E402

SHAPES = {
    # d, layers, heads, vocab, micro-batch, length
    "ga": dict(d=2048, layers=20, heads=16, vocab=32768, batch=2, length=512),
    "activations": dict(d=1536, layers=16, heads=16, vocab=32768, batch=16, length=1024),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=sorted(SHAPES), required=True)
    p.add_argument("--steps", type=int, default=12, help="optimizer steps")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--accum", type=int, default=None, help="micro-batches per step (ga: 8)")
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--save-on-cpu", action="store_true")
    p.add_argument("--optimizer", choices=("foreach", "fused"), default="foreach",
                   help="AdamW's implementation: foreach (PyTorch's default on CUDA: several "
                        "passes over the states a step) or fused (one kernel, one pass)")
    p.add_argument("--step-stats", action="store_true",
                   help="under Spillway, print after each step what it did in that step (driver "
                        "calls, bytes to/from the host, stall and remap time) and what its "
                        "reserved memory is made of (the summary's 'held' line)")
    p.add_argument("--sync-micro-batches", action="store_true",
                   help="the loop before 2026-11-29's session 12: each micro-batch copied from "
                        "pageable memory (a stream sync) and its loss read with .item() (a "
                        "second one); default: batches pinned and copied asynchronously, as a "
                        "DataLoader with pin_memory does, and the losses summed on the GPU and "
                        "read once per optimizer step, as training loops log them")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    cfg = dict(SHAPES[args.model])
    if args.layers:
        cfg["layers"] = args.layers
    accum = args.accum or (8 if args.model == "ga" else 1)
    if not torch.cuda.is_available():
        sys.exit("offload_train.py: needs a GPU")
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(1234)
    dev = torch.device("cuda", 0)
    model = GPT(cfg["vocab"], cfg["d"], cfg["layers"], cfg["heads"], cfg["length"]).to(dev)
    opt = (torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True) if args.optimizer == "fused"
           else torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True))
    n_params = sum(x.numel() for x in model.parameters())
    gen = torch.Generator().manual_seed(1234)
    under = "libspillway_preload" in os.environ.get("LD_PRELOAD", "")
    print(f"{args.model}: {n_params / 1e6:.0f}M parameters, micro-batch {cfg['batch']}x"
          f"{cfg['length']}, accum {accum}, AdamW {args.optimizer}, save_on_cpu {args.save_on_cpu}, "
          f"spillway {under}, "
          f"budget {os.environ.get('SPILLWAY_DEVICE_BUDGET')}", flush=True)
    sw = None
    if under:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))
        import spillway as sw
    prev = {}

    def step_stats():
        # What Spillway did in the step just ended (differences of its counters) and what its
        # reserved memory is made of now.
        cur = dict(sw.stats(0))
        cur.update({"o_" + k: v for k, v in sw.offload_stats(0).items()})
        d = {k: cur[k] - prev.get(k, 0) for k in cur}
        prev.update(cur)
        held = [ln.strip() for ln in sw.summary().splitlines() if ln.strip().startswith("held")]
        print(f"  reserved {cur['reserved_bytes'] / 2**30:.2f} GiB; creates {d['chunk_create_count']}"
              f" releases {d['chunk_release_count']} maps {d['map_count']} unmaps "
              f"{d['unmap_count']}; to host {d['o_bytes_to_host'] / 2**30:.2f} GiB, from host "
              f"{d['o_bytes_from_host'] / 2**30:.2f} GiB; stalls {d['o_stalls']} "
              f"({d['o_stall_ns'] / 1e9:.3f} s), remap {d['o_remap_ns'] / 1e9:.3f} s; "
              f"evictions {d['o_evictions']} fetches {d['o_fetches']} prefetches "
              f"{d['o_prefetches']} in place {d['o_in_place']} (returns "
              f"{d['o_in_place_returns']}); CPU in allocations {d['o_alloc_ns'] / 1e9:.3f} s "
              f"(making room {d['o_make_room_ns'] / 1e9:.3f}), frees {d['o_free_ns'] / 1e9:.3f} s, "
              f"launches {d['o_launch_ns'] / 1e9:.3f} s, waits for the GPU {d['o_cpu_waits']} "
              f"({d['o_cpu_wait_ns'] / 1e9:.3f} s); driver: create {d['o_create_ns'] / 1e9:.3f} s, "
              f"release {d['o_release_ns'] / 1e9:.3f}, map {d['o_map_ns'] / 1e9:.3f}, access "
              f"{d['o_access_ns'] / 1e9:.3f} ({d['o_access_calls']} calls), unmap "
              f"{d['o_unmap_ns'] / 1e9:.3f}; pager maps {d['o_pager_maps']}; "
              + (held[0] if held else ""), flush=True)

    losses, step_s = [], []
    for step in range(args.steps):
        if sw is not None:
            sw.mark(f"step {step}")  # in the event log, when one is recorded (gpu_overlap.py)
        t0 = time.perf_counter()
        total = 0.0 if args.sync_micro_batches else torch.zeros((), device=dev)
        for _ in range(accum):
            batch = torch.randint(cfg["vocab"], (cfg["batch"], cfg["length"] + 1), generator=gen)
            if args.sync_micro_batches:
                batch = batch.to(dev, non_blocking=False)
            else:
                batch = batch.pin_memory().to(dev, non_blocking=True)
            ctx = (torch.autograd.graph.save_on_cpu(pin_memory=True) if args.save_on_cpu
                   else torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t))
            with ctx, torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(batch[:, :-1])
                loss = F.cross_entropy(logits.reshape(-1, cfg["vocab"]),
                                       batch[:, 1:].reshape(-1)) / accum
            loss.backward()
            if args.sync_micro_batches:
                total += loss.item()
            else:
                total += loss.detach()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if not args.sync_micro_batches:
            total = total.item()  # the step's one read of the GPU (a sync)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        losses.append(total)
        step_s.append(dt)
        print(f"step {step} loss {total:.6f} {dt:.3f} s", flush=True)
        if args.step_stats and sw is not None:
            step_stats()
    med = statistics.median(step_s[args.warmup:])
    tokens = accum * cfg["batch"] * cfg["length"]
    res = {"model": args.model, "params": n_params, "accum": accum, "cfg": cfg,
           "optimizer": args.optimizer, "sync_micro_batches": args.sync_micro_batches,
           "save_on_cpu": args.save_on_cpu, "losses": losses, "step_s": step_s,
           "median_step_s": med, "tokens_per_s": tokens / med,
           "torch_peak_allocated": torch.cuda.max_memory_allocated(),
           "budget": os.environ.get("SPILLWAY_DEVICE_BUDGET")}
    if under:
        res["spillway"] = sw.stats(0)
        res["offload"] = sw.offload_stats(0)
    print(f"done: median step {med:.3f} s, {tokens / med:.0f} tokens/s, torch peak allocated "
          f"{res['torch_peak_allocated'] / 2**30:.2f} GiB"
          + (f", spillway peak reserved {res['spillway']['peak_reserved_bytes'] / 2**30:.2f} GiB"
             f", offload {res['offload']}" if under else ""), flush=True)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
