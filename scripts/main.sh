#!/usr/bin/env bash
# main.sh — the main job: installs what is missing, builds Spillway (Release), then
#  - on a machine with a GPU and PyTorch: trains examples/train_gpt.py under Spillway's preload
#    and prints the summary statistics and the memory report (build/main-job-report/);
#  - elsewhere: replays the bundled allocation trace (recorded on an H200 from that example)
#    through the CPU simulator, at the recorded pace, prints the same summary, and makes the
#    memory report of the replayed allocator (build/main-job-report/report.html).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPILLWAY_BUILD_TESTS=OFF >/dev/null
cmake --build build --target spillway spillway_preload spillway_cli
if nvidia-smi -L >/dev/null 2>&1 && python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  echo "== GPU found: training examples/train_gpt.py under Spillway"
  exec build/spillway run --stats --report build/main-job-report -- \
    python3 examples/train_gpt.py --preset small --steps 20
fi
trace=examples/traces/train_gpt_h200.trace
echo "== no GPU (or no PyTorch): replaying $trace through the CPU simulator"
build/spillway replay "$trace" --gpu-lag-ms 20 --trace build/main-job.trace
echo
exec build/spillway report build/main-job.trace -o build/main-job-report
