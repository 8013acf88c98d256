#!/usr/bin/env bash
# gpu-check.sh — every GPU check and benchmark of Spillway, run on the GPU machine over a build
# folder made elsewhere (carried) or here. Writes full results under OUTDIR and prints a short
# table last.
#   scripts/gpu-check.sh STAGE OUTDIR [BUILD]      STAGE: tests | torch | bench | profiler | tracker | all (or several, comma-separated)
# tests: ctest -L gpu (CudaBackend with kernels, the preload under a CUDA program), `spillway
#        info`, and a SPILLWAY_TRACE recording of examples/train_gpt.py (the bundled trace).
# torch: tests/gpu/torch_checks.py (losses in 4 modes, fragmentation, step time), and the
#        fragmentation run again with SPILLWAY_RESERVE_POLICY=compact.
# bench: pair and random-allocation benchmarks, the libtorch anchor, then bench/collect.py.
# profiler: a training run with SPILLWAY_REPORT (all report formats), the memory_viz snapshot
#        read back by PyTorch's torch.cuda._memory_viz (segsum, trace_plot), and Python call
#        sites read without the GIL (the simulator test, then the run's largest blocks).
# tracker: a SPILLWAY_TRACK=1 training run, and tests/gpu/graph_check.py (CUDA graphs, NVTX marks).
# offload: the pager's GPU tests (kernels reading evicted blocks, NVMe round trip, budget) and
#        bench/offload_bench (eviction/prefetch against pinned memcpy, NVMe against raw io_uring).
# offload_torch: PyTorch models under a budget (OFFLOAD_MODELS=ga,activations; GA_SWEEP_RATIOS
#        for more footprint/budget ratios; GA_NVME_HOST_LIMIT for ga with the host tier capped,
#        spilling to NVMe, GA_NVME_OPTIMIZER=fused for it with fused AdamW; GA_FUSED=1 for ga with
#        fused AdamW too, GA_FUSED_STEPS optimizer steps; GA_ACCUM for more micro-batches per
#        optimizer step than 8).
# offload_ab: A/B of settings in one call: each model of AB_MODELS (default activations; "ga" is
#        foreach, "ga_fused" fused AdamW; "ga_sync", "ga_fused_sync" the same with the loop that
#        synchronized twice per micro-batch) unconstrained once, then at half its peak once per
#        variant of AB_VARIANTS (space-separated NAME[@BUILD][:VAR=VAL,VAR=VAL]: settings, or
#        another build folder carried beside the first, e.g. a build of another commit), with
#        --step-stats.
# offload_overlap: what the GPU did per step (compute, copies each way, copies under compute,
#        idle) for each model of OVERLAP_MODELS (default activations) unconstrained and at half
#        its peak: CUPTI kernel and copy records in a report, read by scripts/gpu_overlap.py.
# offload_kernels: per-kernel GPU times of ga unconstrained and under the budget, side by side.
set -uo pipefail
stage=${1:?usage: gpu-check.sh STAGE[,STAGE...] OUTDIR [BUILD]}
out=${2:?usage: gpu-check.sh STAGE[,STAGE...] OUTDIR [BUILD]}
build=${3:-build}
mkdir -p "$out"
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# ctest files hold the absolute paths of the machine that configured the build: make them valid.
built_in=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt" 2>/dev/null)
if [[ -n $built_in && $built_in != "$root" && ! -e $built_in ]]; then
  mkdir -p "$(dirname "$built_in")" && ln -s "$root" "$built_in"
fi
export PYTHONUNBUFFERED=1 SPILLWAY_BUILD="$root/$build"
commit=${SPILLWAY_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
summary=()
want() { [[ ,$stage, == *,$1,* || $stage == all ]]; }  # want STAGE: was it asked for?
step() {  # step NAME CMD... : runs, logs to OUTDIR/NAME.log, records pass/fail
  local name=$1; shift
  local t0=$SECONDS
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  summary+=("$(printf '%-22s %-5s %4ds' "$name" "$([ $rc = 0 ] && echo ok || echo FAIL:$rc)" $((SECONDS - t0)))")
  [ $rc = 0 ] || tail -n 30 "$out/$name.log"
  return $rc
}

if want tests; then
  step info "$build/spillway" info
  step ctest_gpu ctest --test-dir "$build" -L gpu --output-on-failure --timeout 300
  step record_trace env SPILLWAY_TRACE="$out/train_gpt_h200.trace" SPILLWAY_STATS=1 \
    "$build/spillway" run -- python3 examples/train_gpt.py --preset small --steps 6 --warmup 1
  step replay_trace "$build/spillway" replay "$out/train_gpt_h200.trace"
fi
if want torch; then
  step torch_checks python3 tests/gpu/torch_checks.py --out "$out/torch" --frag --steptime
  cp -f "$out/torch/torch_checks.json" "$out/torch_checks.json" 2>/dev/null
  # The compact reserve policy on the fragmentation workload (compare with torch_checks' spillway
  # figure, which uses the default `fast`): ratio in the JSON's spillway stats, and step time.
  step frag_compact env SPILLWAY_RESERVE_POLICY=compact "$build/spillway" run -- \
    python3 examples/train_gpt.py --preset gpt2 --steps 30 --json "$out/frag_compact.json"
fi
if want profiler; then
  step report_run "$build/spillway" run --report "$out/report" -- \
    python3 examples/train_gpt.py --preset small --steps 10 --warmup 2
  step memviz python3 scripts/check_memviz.py "$out/report/snapshot.pickle"
  # Python call sites: the frame reader without the GIL on this machine's CPython (the CPU test
  # on the simulator), then under PyTorch (which allocates with the GIL released).
  step pyframes_sim env SPILLWAY_BUILD="$root/$build" python3 tests/cpu/python_callsite_test.py
  step pyframes_torch python3 scripts/check_pyframes.py "$out/report/report.json" train_gpt.py
  cat "$out/pyframes_torch.log"
fi
if want tracker; then
  # The CUPTI tracker under the PyTorch example: its counters (launches decoded, argument words
  # in live blocks) on stderr, a report with the inferred kinds of tensor, and what PyTorch knew
  # of each tensor (--kinds-truth), scored by scripts/kinds_accuracy.py (with the coverage).
  step track_run env SPILLWAY_TRACK=1 SPILLWAY_STATS=1 "$build/spillway" run \
    --report "$out/track_report" -- python3 examples/train_gpt.py --preset small --steps 12 \
    --warmup 2 --json "$out/track_run.json" --kinds-truth "$out/kinds_truth.jsonl"
  step kinds python3 scripts/kinds_accuracy.py "$out/track_report/report.json" \
    "$out/kinds_truth.jsonl" --out "$out/kinds.json"
  cat "$out/kinds.log"
  # The tracker's cost: step time with tracking and the event log on / the preload alone
  # (GPT-2 at length 1024, interleaved runs): launches through the preload's hooks (the default,
  # SPILLWAY_TRACK_LAUNCHES=auto) and through CUPTI's launch callbacks (=cupti).
  for rep in $(seq 1 ${OVERHEAD_REPS:-3}); do
    step overhead_plain_$rep "$build/spillway" run -- python3 examples/train_gpt.py \
      --preset gpt2 --fixed-len 1024 --steps 40 --warmup 10 --json "$out/overhead_plain_$rep.json"
    for mode in auto cupti; do
      step overhead_${mode}_$rep env SPILLWAY_TRACK=1 SPILLWAY_TRACK_LAUNCHES=$mode SPILLWAY_STATS=1 \
        SPILLWAY_TRACE="$out/overhead_$rep.trace" "$build/spillway" run -- python3 \
        examples/train_gpt.py --preset gpt2 --fixed-len 1024 --steps 40 --warmup 10 \
        --json "$out/overhead_${mode}_$rep.json"
      rm -f "$out/overhead_$rep.trace"
    done
  done
  grep -h "launch hooks" "$out"/overhead_auto_1.log "$out"/overhead_cupti_1.log
  python3 - "$out" <<'PY'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
med = {}
for mode in ("plain", "auto", "cupti"):
    runs = [json.loads(p.read_text())["median_step_s"] for p in sorted(out.glob(f"overhead_{mode}_*.json"))]
    med[mode] = statistics.median(runs) if runs else None
    print(f"overhead {mode:6s} runs {['%.2f ms' % (r * 1e3) for r in runs]}")
res = {"median_of_medians_s": med}
if med["plain"]:
    for mode in ("auto", "cupti"):
        if med[mode]:
            res[f"ratio_{mode}"] = med[mode] / med["plain"]
            print(f"overhead ratio ({mode}): {res[f'ratio_{mode}']:.3f}")
(out / "overhead.json").write_text(json.dumps(res, indent=1) + "\n")
PY
  # The tracker's cost inside one run: paused and resumed every ALTERNATE_K steps
  # (spillway.set_tracking), the event log on throughout; both arms see the same machine state,
  # and each tracked step is paired with the untracked ones either side (paired_ratio).
  step overhead_alternate env SPILLWAY_TRACK=1 SPILLWAY_TRACE="$out/overhead_alt.trace" \
    "$build/spillway" run -- python3 examples/train_gpt.py --preset gpt2 --fixed-len 1024 \
    --steps ${ALTERNATE_STEPS:-410} --warmup 10 --alternate-tracking ${ALTERNATE_K:-1} \
    --json "$out/overhead_alternate.json"
  rm -f "$out/overhead_alt.trace"
  grep -h "alternate tracking" "$out/overhead_alternate.log"
  # Kernel times from CUPTI activity records (SPILLWAY_KERNELS=1) in the Chrome trace.
  step kernels_run env SPILLWAY_TRACK=1 SPILLWAY_KERNELS=1 "$build/spillway" run --report \
    "$out/kernels_report" -- python3 examples/train_gpt.py --preset small --steps 4 --warmup 1
  step kernels_check python3 -c "
import json, sys
ev = json.load(open(sys.argv[1]))
ev = ev['traceEvents'] if isinstance(ev, dict) else ev
k = [e for e in ev if e.get('cat') == 'kernel' and e.get('ph') == 'X']
names = {e['name'] for e in k}
print(len(k), 'kernel slices,', len(names), 'kernel names; e.g.', sorted(names)[:3])
sys.exit(0 if len(k) > 100 and all(e['dur'] > 0 for e in k) else 1)
" "$out/kernels_report/trace.json"
  # CUDA graphs and NVTX: a captured and an explicit graph launched N times under the preload;
  # per-buffer access counts and the NVTX marks checked in the event log.
  step graph_tracking python3 tests/gpu/graph_check.py "$build/spillway_graph_program" \
    "$build/libspillway_preload.so" "$out/graph_tracking" 5
fi
if want offload; then
  nvme_dir=${SPILLWAY_NVME_DIR:-/tmp/spillway-nvme}
  mkdir -p "$nvme_dir"
  step offload_gpu_test env SPILLWAY_TEST_NVME_DIR="$nvme_dir" "$build/spillway_offload_test"
  step offload_bench "$build/bench/offload_bench" --gib 8 --block-mib 256 --reps 3 \
    --nvme-dir "$nvme_dir" --nvme-gib 4 --json "$out/offload_bench.json"
  cat "$out/offload_bench.log"
fi
# GA_ACCUM: micro-batches per optimizer step for every ga run (offload_train.py's default: 8).
ga_acc=()
[ -n "${GA_ACCUM:-}" ] && ga_acc=(--accum "$GA_ACCUM")
if want offload_torch; then
  # PyTorch under a budget: each model unconstrained (preload, no budget), then with the budget at
  # half its peak reserved memory, offload on and the tracker on (tracked safety), with
  # --step-stats (outside the timed steps): foreach ga runs in one of two modes (docs/offload.md).
  for model in ${OFFLOAD_MODELS:-ga}; do
    steps=${OFFLOAD_STEPS:-6}
    [ "$model" = ga ] && steps=${GA_STEPS:-$steps}
    acc=()
    [ "$model" = ga ] && acc=("${ga_acc[@]}")
    step ${model}_free env SPILLWAY_STATS=1 "$build/spillway" run -- python3 \
      bench/torch/offload_train.py --model $model "${acc[@]}" --steps $steps --warmup 2 \
      --json "$out/${model}_free.json"
    budget=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(int(d['spillway']['peak_reserved_bytes'] / ${OFFLOAD_RATIO:-2}))" "$out/${model}_free.json" 2>/dev/null)
    [ -n "$budget" ] || continue
    step ${model}_budget timeout ${OFFLOAD_TIMEOUT:-300} env SPILLWAY_STATS=1 "$build/spillway" run \
      --budget "$budget" --offload --track -- python3 bench/torch/offload_train.py --model $model "${acc[@]}" \
      --steps $steps --warmup 2 --step-stats --json "$out/${model}_budget.json"
    tail -n 4 "$out/${model}_free.log" "$out/${model}_budget.log"
    if [ "$model" = ga ] && [ -n "${GA_FUSED:-}" ]; then
      # ga_fused: the same model with fused AdamW (one pass over the states a step instead of
      # foreach's five), unconstrained and at the same footprint/budget ratio; GA_FUSED_STEPS
      # optimizer steps (default: GA_STEPS).
      fsteps=${GA_FUSED_STEPS:-$steps}
      step ga_fused_free env SPILLWAY_STATS=1 "$build/spillway" run -- python3 \
        bench/torch/offload_train.py --model ga "${acc[@]}" --optimizer fused --steps $fsteps --warmup 2 \
        --json "$out/ga_fused_free.json"
      fb=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(int(d['spillway']['peak_reserved_bytes'] / ${OFFLOAD_RATIO:-2}))" "$out/ga_fused_free.json" 2>/dev/null)
      [ -n "$fb" ] && step ga_fused_budget timeout ${OFFLOAD_TIMEOUT:-300} env SPILLWAY_STATS=1 \
        "$build/spillway" run --budget "$fb" --offload --track -- python3 \
        bench/torch/offload_train.py --model ga "${acc[@]}" --optimizer fused --steps $fsteps --warmup 2 \
        --step-stats --json "$out/ga_fused_budget.json"
      tail -n 2 "$out/ga_fused_budget.log"
    fi
    if [ "$model" = ga ] && [ -n "${GA_NVME_HOST_LIMIT:-}" ]; then
      # nvme: the same budget with the host tier capped (GA_NVME_HOST_LIMIT, e.g. 4G), so that
      # blocks spill on to the NVMe tier; the report gives the tier's bandwidth each way.
      nvme_dir=${SPILLWAY_NVME_DIR:-/tmp/spillway-nvme}
      mkdir -p "$nvme_dir"
      nb=$budget  # fused AdamW: half of its own unconstrained peak (ga_fused_free)
      [ "${GA_NVME_OPTIMIZER:-foreach}" = fused ] && [ -n "${fb:-}" ] && nb=$fb
      step ga_nvme timeout ${OFFLOAD_TIMEOUT:-300} env SPILLWAY_STATS=1 SPILLWAY_NVME_PATH="$nvme_dir" \
        SPILLWAY_HOST_LIMIT="$GA_NVME_HOST_LIMIT" "$build/spillway" run --budget "$nb" --offload \
        --track --report "$out/ga_nvme_report" -- python3 bench/torch/offload_train.py --model ga "${acc[@]}" \
        --optimizer ${GA_NVME_OPTIMIZER:-foreach} --steps ${GA_NVME_STEPS:-4} --warmup 1 \
        --json "$out/ga_nvme.json"
      tail -n 3 "$out/ga_nvme.log"
    fi
    if [ "$model" = ga ]; then
      # max_footprint_over_budget_at_0_9: the same model at smaller footprint/budget ratios
      # (fewer optimizer steps; their losses are compared with the unconstrained run's first ones).
      # With GA_FUSED and GA_SWEEP_FUSED, fused AdamW's runs too (ga_fused_budget_r*, against
      # ga_fused_free).
      # GA_RETURN_USES="1 3": each point once per SPILLWAY_OFFLOAD_RETURN_USES value
      # (ga_budget_r2.0_u3.json); unset: the pager's default only.
      for r in ${GA_SWEEP_RATIOS:-}; do
        for o in foreach ${GA_SWEEP_FUSED:+fused}; do
          n=ga; [ $o = fused ] && n=ga_fused
          [ -f "$out/${n}_free.json" ] || continue
          b=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(int(d['spillway']['peak_reserved_bytes'] / $r))" "$out/${n}_free.json")
          for u in ${GA_RETURN_USES:--}; do
            tag=${n}_budget_r$r; ue=()
            [ "$u" != - ] && tag=${tag}_u$u && ue=(SPILLWAY_OFFLOAD_RETURN_USES=$u)
            step $tag timeout ${OFFLOAD_TIMEOUT:-300} env SPILLWAY_STATS=1 "${ue[@]}" "$build/spillway" \
              run --budget "$b" --offload --track -- python3 bench/torch/offload_train.py --model ga \
              "${acc[@]}" --optimizer $o --steps ${GA_SWEEP_STEPS:-6} --warmup 2 \
              --json "$out/$tag.json"
            tail -n 2 "$out/$tag.log"
          done
        done
      done
    fi
    if [ "$model" = activations ]; then
      # vs_save_on_cpu: save_on_cpu(pin_memory=True) alone, then Spillway with its peak as budget.
      step soc env SPILLWAY_STATS=1 "$build/spillway" run -- python3 bench/torch/offload_train.py \
        --model activations --save-on-cpu --steps ${OFFLOAD_STEPS:-6} --warmup 2 \
        --json "$out/soc.json"
      soc_budget=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['spillway']['peak_reserved_bytes'])" "$out/soc.json" 2>/dev/null)
      [ -n "$soc_budget" ] && step spillway_at_soc timeout ${OFFLOAD_TIMEOUT:-300} env \
        SPILLWAY_STATS=1 "$build/spillway" run --budget "$soc_budget" --offload --track -- \
        python3 bench/torch/offload_train.py --model activations --steps ${OFFLOAD_STEPS:-6} \
        --warmup 2 --json "$out/spillway_at_soc.json"
    fi
  done
fi
# model_args activations|ga|ga_fused|ga_sync|ga_fused_sync: offload_train.py's arguments for it,
# in the array `args` (ga: foreach AdamW, PyTorch's default; ga_fused: fused AdamW; *_sync: the
# loop that synchronized twice per micro-batch, before session 12).
model_args() {
  case $1 in
    ga) args=(--model ga "${ga_acc[@]}" --optimizer foreach --steps ${GA_STEPS:-6}) ;;
    ga_fused) args=(--model ga "${ga_acc[@]}" --optimizer fused --steps ${GA_STEPS:-6}) ;;
    ga_sync) args=(--model ga "${ga_acc[@]}" --optimizer foreach --sync-micro-batches --steps ${GA_STEPS:-6}) ;;
    ga_fused_sync) args=(--model ga "${ga_acc[@]}" --optimizer fused --sync-micro-batches --steps ${GA_STEPS:-6}) ;;
    activations) args=(--model activations --steps ${OFFLOAD_STEPS:-6}) ;;
    *) echo "gpu-check.sh: unknown model '$1' (activations, ga, ga_fused, ga_sync or ga_fused_sync)" >&2; return 1 ;;
  esac
}
if want offload_ab; then
  for m in ${AB_MODELS:-activations}; do
    step ${m}_model_args model_args $m || continue  # a bad name: FAIL in the table
    step ab_${m}_free env SPILLWAY_STATS=1 "$build/spillway" run -- python3 \
      bench/torch/offload_train.py "${args[@]}" --warmup 2 --json "$out/ab_${m}_free.json"
    b=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(int(d['spillway']['peak_reserved_bytes'] / ${OFFLOAD_RATIO:-2}))" "$out/ab_${m}_free.json" 2>/dev/null)
    [ -n "$b" ] || continue
    for v in ${AB_VARIANTS:-base}; do
      name=${v%%:*}; ve=(); vb=$build
      [[ $v == *:* ]] && IFS=, read -ra ve <<<"${v#*:}"
      [[ $name == *@* ]] && vb=${name#*@} && name=${name%%@*}
      step ab_${m}_$name timeout ${OFFLOAD_TIMEOUT:-300} env SPILLWAY_STATS=1 "${ve[@]}" \
        "$vb/spillway" run --budget "$b" --offload --track -- python3 \
        bench/torch/offload_train.py "${args[@]}" --warmup 2 --step-stats \
        --json "$out/ab_${m}_$name.json"
      tail -n 1 "$out/ab_${m}_$name.log" | cut -c1-160
    done
  done
fi
if want offload_overlap; then
  for m in ${OVERLAP_MODELS:-activations}; do
    step ${m}_model_args model_args $m || continue  # a bad name: FAIL in the table
    step ov_${m}_free env SPILLWAY_TRACK=1 SPILLWAY_KERNELS=1 SPILLWAY_STATS=1 "$build/spillway" \
      run --report "$out/ov_${m}_free" -- python3 bench/torch/offload_train.py "${args[@]}" \
      --warmup 2 --json "$out/ov_${m}_free.json"
    b=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(int(d['spillway']['peak_reserved_bytes'] / ${OFFLOAD_RATIO:-2}))" "$out/ov_${m}_free.json" 2>/dev/null)
    [ -n "$b" ] && step ov_${m}_budget timeout ${OFFLOAD_TIMEOUT:-300} env SPILLWAY_KERNELS=1 \
      SPILLWAY_STATS=1 "$build/spillway" run --budget "$b" --offload --track \
      --report "$out/ov_${m}_budget" -- python3 bench/torch/offload_train.py "${args[@]}" \
      --warmup 2 --step-stats --json "$out/ov_${m}_budget.json"
    for r in free budget; do
      [ -f "$out/ov_${m}_$r/trace.json" ] && step ov_${m}_${r}_overlap python3 \
        scripts/gpu_overlap.py "$out/ov_${m}_$r/trace.json" --json "$out/ov_${m}_${r}_overlap.json"
      cat "$out/ov_${m}_${r}_overlap.log" 2>/dev/null
    done
  done
fi
if want offload_kernels; then
  # Where ga's GPU time goes under the budget: per-kernel times (CUPTI activity records,
  # SPILLWAY_KERNELS=1) of a few optimizer steps unconstrained and at half the peak, side by side
  # (scripts/kernel_times.py). KERNELS_OPTIMIZER=fused|foreach (default fused).
  opt=${KERNELS_OPTIMIZER:-fused}
  acc=("${ga_acc[@]}")
  step kernels_ga_free env SPILLWAY_TRACK=1 SPILLWAY_KERNELS=1 SPILLWAY_STATS=1 "$build/spillway" \
    run --report "$out/kernels_ga_free" -- python3 bench/torch/offload_train.py --model ga \
    "${acc[@]}" --optimizer "$opt" --steps 3 --warmup 1 --json "$out/kernels_ga_free.json"
  kb=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(int(d['spillway']['peak_reserved_bytes'] / ${OFFLOAD_RATIO:-2}))" "$out/kernels_ga_free.json" 2>/dev/null)
  [ -n "$kb" ] && step kernels_ga_budget timeout ${OFFLOAD_TIMEOUT:-300} env SPILLWAY_KERNELS=1 \
    SPILLWAY_STATS=1 "$build/spillway" run --budget "$kb" --offload --track \
    --report "$out/kernels_ga_budget" -- python3 bench/torch/offload_train.py --model ga \
    "${acc[@]}" --optimizer "$opt" --steps 3 --warmup 1 --json "$out/kernels_ga_budget.json"
  step kernel_times python3 scripts/kernel_times.py "$out/kernels_ga_free/trace.json" \
    "$out/kernels_ga_budget/trace.json" --top 12 --json "$out/kernel_times.json"
  cat "$out/kernel_times.log"
fi
if want tracker_diag; then
  # Where the tracker's and the log's cost goes (GPT-2, length 1024), runs interleaved: the
  # preload alone; the event log alone (with and without call sites); tracking alone; tracking
  # and the log (the overhead_ratio configuration; with and without call sites); tracking with
  # the callback timed (SPILLWAY_TRACK_DIAG=time, summary in diag_time_*.log).
  for rep in $(seq 1 ${DIAG_REPS:-3}); do
    for v in plain log log_nocs track full full_nocs time; do
      t="$out/diag_${v}_$rep.trace"
      case $v in
        plain) e=() ;;
        log) e=(SPILLWAY_TRACE="$t") ;;
        log_nocs) e=(SPILLWAY_TRACE="$t" SPILLWAY_CALLSITE_MIN=0) ;;
        track) e=(SPILLWAY_TRACK=1) ;;
        full) e=(SPILLWAY_TRACK=1 SPILLWAY_TRACE="$t") ;;
        full_nocs) e=(SPILLWAY_TRACK=1 SPILLWAY_TRACE="$t" SPILLWAY_CALLSITE_MIN=0) ;;
        time) e=(SPILLWAY_TRACK=1 SPILLWAY_TRACK_DIAG=time SPILLWAY_STATS=1) ;;
      esac
      step diag_${v}_$rep env "${e[@]}" "$build/spillway" run -- python3 examples/train_gpt.py \
        --preset gpt2 --fixed-len 1024 --steps 40 --warmup 10 --json "$out/diag_${v}_$rep.json"
      rm -f "$t"
    done
  done
  grep -h "callback\|launch hooks" "$out"/diag_time_1.log | head -5
  python3 - "$out" <<'PY'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
res = {}
for v in ("plain", "log", "log_nocs", "track", "full", "full_nocs", "time"):
    meds, pooled = [], []
    for p in sorted(out.glob(f"diag_{v}_*.json")):
        if not p.stem[len(f"diag_{v}_"):].isdigit():  # diag_log_* also matches diag_log_nocs_*
            continue
        d = json.loads(p.read_text())
        meds.append(d["median_step_s"])
        pooled += d["step_s"][10:]
    if not pooled:
        continue
    pooled.sort()
    res[v] = {"run_medians_s": meds, "median_of_medians_s": statistics.median(meds),
              "pooled_median_s": statistics.median(pooled), "pooled_p20_s": pooled[len(pooled) // 5]}
base = res.get("plain")
for v, r in res.items():
    if base:
        r["ratio_median_of_medians"] = r["median_of_medians_s"] / base["median_of_medians_s"]
        r["ratio_pooled_median"] = r["pooled_median_s"] / base["pooled_median_s"]
        r["ratio_pooled_p20"] = r["pooled_p20_s"] / base["pooled_p20_s"]
    print(f"{v:10s} runs {' '.join('%.1f' % (m * 1e3) for m in r['run_medians_s'])} ms | "
          f"ratio mom {r.get('ratio_median_of_medians', 0):.3f} pooled {r.get('ratio_pooled_median', 0):.3f} "
          f"p20 {r.get('ratio_pooled_p20', 0):.3f}")
(out / "tracker_diag.json").write_text(json.dumps(res, indent=1) + "\n")
PY
fi
if want bench; then
  step pair_bench "$build/bench/pair_bench" --benchmark_min_time=0.05 --benchmark_repetitions=5 \
    --benchmark_out="$out/pair_bench.json" --benchmark_out_format=json
  step random_bench "$build/bench/random_bench" --benchmark_out="$out/random_bench.json" \
    --benchmark_out_format=json
  step torch_pair bench/torch/build_and_run.sh "$out"
  checks=()
  [ -f "$out/torch_checks.json" ] && checks=(--checks "$out/torch_checks.json")
  [ -f "$out/frag_compact.json" ] && checks+=(--compact "$out/frag_compact.json")
  step collect python3 bench/collect.py --pair "$out/pair_bench.json" \
    --random "$out/random_bench.json" --torch "$out/torch_pair.json" "${checks[@]}" \
    --out "$out/allocator.json" --commit "$commit" --gpu "$gpu"
  cat "$out/collect.log"
fi
echo
echo "== spillway gpu-check ($stage) on $gpu, commit $commit"
printf '%s\n' "${summary[@]}"
