#!/usr/bin/env python3
# train_gpt.py — a self-contained GPT-style training loop on random tokens, used to check that
# Spillway gives the same losses as PyTorch's own allocators, and to measure fragmentation and
# step time. Deterministic settings are always on, so two runs give bit-identical losses.
#
#   python3 examples/train_gpt.py --preset tiny --steps 20 --json out.json
#   spillway run -- python3 examples/train_gpt.py --preset gpt2 --steps 30
#   python3 examples/train_gpt.py --spillway-install      # PyTorch allocates through Spillway
import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

# cuBLAS reads this when it creates its handle; it must be set before torch is imported.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# d: model width, layers, heads, vocab, batch, and the range sequence lengths are drawn from.
PRESETS = {
    "tiny": dict(d=256, layers=4, heads=4, vocab=8192, batch=8, min_len=64, max_len=256),
    "small": dict(d=512, layers=8, heads=8, vocab=32768, batch=8, min_len=128, max_len=512),
    "gpt2": dict(d=768, layers=12, heads=12, vocab=50257, batch=8, min_len=128, max_len=1024),
}


class Block(nn.Module):
    """Pre-LN transformer block: causal self-attention, then a GELU MLP."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.out = nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    """Decoder-only transformer with token + learned position embeddings and a head tied to
    the token embedding."""

    def __init__(self, vocab, d, layers, heads, n_pos):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(n_pos, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.tok.weight
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx):
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.tok(idx) + self.pos(pos)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def parse_args():
    p = argparse.ArgumentParser(
        description="GPT-style training on random tokens, deterministic, for allocator checks")
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5, help="first steps left out of the timing")
    p.add_argument("--fixed-len", type=int, default=None,
                   help="use this sequence length for every step (for step timing)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast (default on)")
    p.add_argument("--spillway-install", action="store_true",
                   help="make Spillway PyTorch's allocator (spillway.torch.install()) first")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--alternate-tracking", type=int, default=0, metavar="K",
                   help="under the preload with SPILLWAY_TRACK=1: pause and resume the tracker "
                        "every K steps after the warm-up (spillway.set_tracking), and report the "
                        "median step with it on and off: its cost measured inside one run")
    p.add_argument("--kinds-truth", type=Path, default=None,
                   help="write what PyTorch knows of each tensor's kind here (JSON lines: "
                        "wall-clock ns, kind, storage address), to score Spillway's inferred kinds")
    args = p.parse_args()
    if args.steps <= args.warmup:
        p.error(f"--steps ({args.steps}) must be larger than --warmup ({args.warmup})")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.fixed_len is not None and args.fixed_len < 1:
        p.error("--fixed-len must be >= 1")
    if args.alternate_tracking < 0:
        p.error("--alternate-tracking must be >= 0")
    return args


def alternate_summary(step_s, tracked, warmup, k):
    """Tracking on against off inside one run (--alternate-tracking K). Besides the ratio of the
    two medians, a paired figure robust to the machine's slow drifts: each block of K tracked
    steps against the mean of the untracked blocks either side of it; the median of those ratios,
    with a 90% bootstrap interval (2000 resamples, fixed seed)."""
    timed = list(zip(step_s, tracked))[warmup:]
    on_s = [t for t, on in timed if on]
    off_s = [t for t, on in timed if not on]
    blocks = []  # (tracked, mean step) of each run of K steps after the warm-up
    for i in range(0, len(timed) - k + 1, k):
        chunk = timed[i:i + k]
        if len({on for _, on in chunk}) == 1:
            blocks.append((chunk[0][1], statistics.fmean(t for t, _ in chunk)))
    pairs = [blocks[i][1] / ((blocks[i - 1][1] + blocks[i + 1][1]) / 2)
             for i in range(1, len(blocks) - 1)
             if blocks[i][0] and not blocks[i - 1][0] and not blocks[i + 1][0]]
    ci = None
    if len(pairs) >= 10:
        rng = random.Random(7)
        meds = sorted(statistics.median(rng.choices(pairs, k=len(pairs))) for _ in range(2000))
        ci = [meds[int(0.05 * len(meds))], meds[int(0.95 * len(meds)) - 1]]
    return {"k": k, "tracked": tracked,
            "on_median_s": statistics.median(on_s) if on_s else None,
            "off_median_s": statistics.median(off_s) if off_s else None,
            "ratio": statistics.median(on_s) / statistics.median(off_s) if on_s and off_s else None,
            "pairs": len(pairs),
            "paired_ratio": statistics.median(pairs) if pairs else None,
            "paired_ratio_ci90": ci}


def import_spillway():
    """The spillway package of this repository (python/ folder)."""
    sys.path.insert(0, str(REPO / "python"))
    import spillway
    import spillway.torch
    return spillway


def peak(fn):
    """torch.cuda.max_memory_*(), or None where the allocator does not keep it (a pluggable
    allocator has no statistics)."""
    try:
        return fn()
    except RuntimeError as e:
        print(f"note: torch.cuda.{fn.__name__}() unavailable: {e}", file=sys.stderr)
        return None


def main():
    args = parse_args()
    cfg = PRESETS[args.preset]

    under_preload = "libspillway_preload" in os.environ.get("LD_PRELOAD", "")
    spillway = import_spillway() if (under_preload or args.spillway_install) else None
    if args.spillway_install:
        spillway.torch.install()  # before anything below touches CUDA
    if spillway is not None:
        how = " + ".join(w for w, on in (("LD_PRELOAD", under_preload),
                                          ("spillway.torch.install()", args.spillway_install)) if on)
        print(f"spillway: {spillway.library_path()} through {how}", flush=True)

    if not torch.cuda.is_available():
        sys.exit("train_gpt.py: CUDA is not available to PyTorch; this script needs a GPU")

    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.manual_seed(args.seed)
    torch.cuda.manual_seed_all(args.seed)

    device = torch.device("cuda", torch.cuda.current_device())
    n_pos = max(cfg["max_len"], args.fixed_len or 0)
    model = GPT(cfg["vocab"], cfg["d"], cfg["layers"], cfg["heads"], n_pos).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1,
                            foreach=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"preset {args.preset}: {n_params / 1e6:.1f}M parameters, batch {cfg['batch']}, "
          f"length {args.fixed_len or str(cfg['min_len']) + '..' + str(cfg['max_len'])}, "
          f"bf16 {args.bf16}, torch {torch.__version__}, {torch.cuda.get_device_name(device)}, "
          f"PYTORCH_CUDA_ALLOC_CONF={os.environ.get('PYTORCH_CUDA_ALLOC_CONF')}, "
          f"PYTORCH_NO_CUDA_MEMORY_CACHING={os.environ.get('PYTORCH_NO_CUDA_MEMORY_CACHING')}",
          flush=True)

    truth = open(args.kinds_truth, "w") if args.kinds_truth else None

    def note(kind, tensor):
        if truth is not None and tensor is not None and tensor.is_cuda:
            truth.write(json.dumps({"t": time.time_ns(), "kind": kind,
                                    "ptr": tensor.untyped_storage().data_ptr()}) + "\n")

    param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):  # tensors autograd saves for backward: activations (parameters excluded)
        if t.is_cuda and t.untyped_storage().data_ptr() not in param_ptrs:
            note("activation", t)
        return t

    len_rng = random.Random(args.seed)
    tok_gen = torch.Generator().manual_seed(args.seed)  # CPU: same tokens on any device
    if args.alternate_tracking and spillway is None:
        raise SystemExit("--alternate-tracking needs the Spillway preload (spillway run)")
    losses, step_s, tracked = [], [], []
    for step in range(args.steps):
        if args.alternate_tracking:
            # On through the warm-up, then K steps off, K on, ...
            on = step < args.warmup or ((step - args.warmup) // args.alternate_tracking) % 2 == 1
            spillway.set_tracking(on)
            tracked.append(on)
        t0 = time.perf_counter()
        length = args.fixed_len or len_rng.randint(cfg["min_len"], cfg["max_len"])
        batch = torch.randint(cfg["vocab"], (cfg["batch"], length + 1), generator=tok_gen)
        batch = batch.to(device)
        x, y = batch[:, :-1], batch[:, 1:]
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t) if truth else \
                contextlib.nullcontext():
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.bf16):
                logits = model(x)
                loss = F.cross_entropy(logits.reshape(-1, cfg["vocab"]), y.reshape(-1))
        loss.backward()
        opt.step()
        if truth is not None:  # after the step, before zero_grad frees the gradients
            for prm in model.parameters():
                note("parameter", prm)
                note("gradient", prm.grad)
                for v in opt.state[prm].values():
                    if torch.is_tensor(v):
                        note("optimizer_state", v)
        opt.zero_grad(set_to_none=True)
        loss_value = loss.item()
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        losses.append(loss_value)
        step_s.append(dt)
        print(f"step {step} loss {loss_value:.6f} {dt * 1e3:.1f} ms", flush=True)

    if truth is not None:
        truth.close()
    results = {
        "preset": args.preset,
        "steps": args.steps,
        "warmup": args.warmup,
        "fixed_len": args.fixed_len,
        "bf16": args.bf16,
        "seed": args.seed,
        "losses": losses,
        "step_s": step_s,
        "median_step_s": statistics.median(step_s[args.warmup:]),
        "peak_allocated": peak(torch.cuda.max_memory_allocated),
        "peak_reserved": peak(torch.cuda.max_memory_reserved),
        "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF"),
        "no_caching": os.environ.get("PYTORCH_NO_CUDA_MEMORY_CACHING"),
        "spillway": spillway.stats(device.index) if spillway is not None else None,
        "spillway_library": spillway.library_path() if spillway is not None else None,
        "torch_version": torch.__version__,
        "device_name": torch.cuda.get_device_name(device),
    }
    if args.alternate_tracking:
        results["alternate_tracking"] = alternate_summary(step_s, tracked, args.warmup,
                                                          args.alternate_tracking)
        a = results["alternate_tracking"]
        print(f"alternate tracking: on {a['on_median_s']}, off {a['off_median_s']}, ratio of "
              f"medians {a['ratio']}, paired ratio {a['paired_ratio']} (90% CI "
              f"{a['paired_ratio_ci90']}, {a['pairs']} pairs)", flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")

    def gib(n):
        return "n/a" if n is None else f"{n / 2**30:.2f} GiB"

    line = (f"done: preset {args.preset}, {args.steps} steps, median step "
            f"{results['median_step_s'] * 1e3:.1f} ms (after {args.warmup} warmup), final loss "
            f"{losses[-1]:.6f}, torch peak allocated {gib(results['peak_allocated'])} reserved "
            f"{gib(results['peak_reserved'])}")
    if spillway is not None:
        s = results["spillway"]
        line += (f", spillway peak allocated {gib(s['peak_allocated_bytes'])} reserved "
                 f"{gib(s['peak_reserved_bytes'])} allocs {s['alloc_count']}")
    print(line, flush=True)


if __name__ == "__main__":
    main()
