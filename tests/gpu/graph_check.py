#!/usr/bin/env python3
"""graph_check.py — the tracker's CUDA-graph and NVTX check (ctest label gpu).

Runs graph_program under the preload with SPILLWAY_TRACK=1 and SPILLWAY_TRACE, then reads the
event log (docs/trace-format.md) and asserts, with N graph launches:
  - A (written by captured kernels only, never read back): exactly N accesses: one per graph
    launch, none from the launches made while capturing;
  - C (written on a second stream joined to the capture by events, not read back): exactly N;
  - B (captured, read back once), E (explicit kernel node), F (captured memset): N or N + 1;
  - D (allocated, never touched): 0;
  - NVTX: a begin and an end mark "spillway graph work" and an instant "spillway graph done".
Usage: graph_check.py PROGRAM PRELOAD WORKDIR [N]. Exit 0 pass, 1 fail, 77 no GPU (skipped).
"""
import os
import struct
import subprocess
import sys

HEADER = 64
RECORD = struct.Struct("<QQQQQQiHHII")  # t_ns addr size stream seq aux device kind status aux2 reserved
K_MARK, K_STRING, K_ACCESS = 30, 40, 50


def read_trace(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"SPWTRACE":
        raise SystemExit(f"FAIL: {path}: not a SPILLWAY_TRACE file")
    version, header_size, record_size = struct.unpack_from("<III", data, 8)
    if version != 2 or record_size != RECORD.size:
        raise SystemExit(f"FAIL: {path}: version {version}, record size {record_size}")
    access = {}  # block address -> accesses (summed over records: one per free or exit)
    labels, chunks, marks = {}, {}, []
    for off in range(header_size, len(data) - RECORD.size + 1, RECORD.size):
        t, addr, size, stream, _seq, aux, device, kind, _status, aux2, _r = RECORD.unpack_from(
            data, off)
        if kind == K_ACCESS:
            access[addr] = access.get(addr, 0) + size
        elif kind == K_STRING:
            text = struct.pack("<QQQ", size, stream, aux)
            chunks.setdefault(addr, {})[aux2] = text
            labels[addr] = device  # label length
        elif kind == K_MARK:
            marks.append((addr, aux2))
    names = {}
    for lid, length in labels.items():
        parts = chunks[lid]
        names[lid] = b"".join(parts[i] for i in sorted(parts))[:length].decode("utf-8", "replace")
    return access, [(names.get(lid, f"?{lid}"), phase) for lid, phase in marks]


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    program, preload, work = sys.argv[1], sys.argv[2], sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    os.makedirs(work, exist_ok=True)
    trace = os.path.join(work, "graph.trace")
    if os.path.exists(trace):
        os.remove(trace)
    env = dict(os.environ, LD_PRELOAD=preload, SPILLWAY_TRACK="1", SPILLWAY_TRACE=trace,
               SPILLWAY_STATS="1")
    env.pop("NVTX_INJECTION64_PATH", None)  # the preload must set it
    r = subprocess.run([program, str(n)], env=env, capture_output=True, text=True, timeout=240)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    if r.returncode == 77:
        print("SKIPPED: no CUDA GPU on this machine")
        return 77
    if r.returncode != 0:
        print(f"FAIL: graph_program exited {r.returncode}")
        return 1
    bufs = {}
    for line in r.stdout.splitlines():
        f = line.split()
        if len(f) == 3 and f[0] == "BUF":
            bufs[f[1]] = int(f[2], 16)
        elif len(f) == 2 and f[0] == "N":
            n = int(f[1])
    access, marks = read_trace(trace)
    failures = []

    def expect(ok, what):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)

    if not access:
        expect(False, "the trace holds kAccess records (is the tracker running? see stderr)")
    want = {"A": (n, n), "C": (n, n), "B": (n, n + 1), "E": (n, n + 1), "F": (n, n + 1),
            "D": (0, 0)}
    for name, (lo, hi) in want.items():
        got = access.get(bufs.get(name, -1))
        span = f"{lo}" if lo == hi else f"{lo}..{hi}"
        expect(got is not None and lo <= got <= hi,
               f"buffer {name}: {got} accesses, want {span} (N = {n} graph launches)")
    for m in [("spillway graph work", 1), ("spillway graph work", 2), ("spillway graph done", 0)]:
        expect(m in marks, f"NVTX mark {m[0]!r} phase {m[1]} in the trace (marks: {marks[:10]})")
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
