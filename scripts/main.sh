#!/usr/bin/env bash
# main.sh — the main job: installs what is missing, builds Spillway (Release), then
#  - on a machine with a GPU and PyTorch: trains examples/train_gpt.py under Spillway's preload
#    and prints the summary statistics and the memory report (build/main-job-report/);
#  - elsewhere: replays the bundled allocation trace (recorded on an H200 from that example)
#    through the CPU simulator, at the recorded pace, prints the same summary, and makes the
#    memory report of the replayed allocator (build/main-job-report/report.html).
# Then offload at work: on a GPU, an activation-heavy model (bench/torch/offload_train.py) trains
# with the device budget at about half its peak (--budget 13G --offload --track), same losses;
# without one, the bundled trace is replayed again with the budget at 1400 MiB (57% of its
# peak): blocks go to the host tier instead of failing, and the report shows the tiers.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPILLWAY_BUILD_TESTS=OFF >/dev/null
cmake --build build --target spillway spillway_preload spillway_cli
if nvidia-smi -L >/dev/null 2>&1 && python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  echo "== GPU found: training examples/train_gpt.py under Spillway"
  build/spillway run --stats --report build/main-job-report -- \
    python3 examples/train_gpt.py --preset small --steps 20
  echo "== offload: a 505M-parameter activation-heavy model (native peak ~27 GiB) in 13 GiB"
  exec build/spillway run --stats --budget 13G --offload --track -- \
    python3 bench/torch/offload_train.py --model activations --steps 6
fi
trace=examples/traces/train_gpt_h200.trace
echo "== no GPU (or no PyTorch): replaying $trace through the CPU simulator"
build/spillway replay "$trace" --gpu-lag-ms 20 --trace build/main-job.trace
echo
build/spillway report build/main-job.trace -o build/main-job-report
echo
echo "== offload: the same trace with SPILLWAY_DEVICE_BUDGET=1400M (57% of its peak) and SPILLWAY_OFFLOAD=1"
SPILLWAY_DEVICE_BUDGET=1400M SPILLWAY_OFFLOAD=1 build/spillway replay "$trace" \
  --trace build/main-job-offload.trace
build/spillway report build/main-job-offload.trace -o build/main-job-offload-report \
  | sed -n '/^offload:/,/^prefetch\|hit rate/p'
