#!/usr/bin/env bash
# GPU check for a machine with a CUDA GPU (tests never need one). From the repository root:
#     bash bench/gpu_check.sh            # installs with `make install` first when .venv is missing
# 1. the quick suite on CUDA (bf16 where the experiment allows), timed, summaries kept;
# 2. bench_gpu.py: scoring tok/s fp32 and bf16 against the CPU, lab training tok/s and MFU;
# 3. lab training under torchrun with the NCCL backend (one rank per visible GPU).
# Figures go to BENCHMARKS.md (section "gpu"); logs and run folders to ${OUT:-gpu-check}/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-check}"
mkdir -p "$OUT"
[ -x .venv/bin/myopia ] || make install
PY=.venv/bin/python
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi.csv"
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'; print(torch.cuda.get_device_name())"

start=$(date +%s)
.venv/bin/myopia run quick --device cuda --dtype bfloat16 --out "$OUT/quick-cuda" 2>&1 | tee "$OUT/quick-cuda.log"
echo "quick suite on CUDA: $(( $(date +%s) - start )) s" | tee -a "$OUT/times.txt"

$PY bench/bench_gpu.py 2>&1 | tee "$OUT/bench_gpu.log"

gpus=$($PY -c "import torch; print(torch.cuda.device_count())")
start=$(date +%s)
.venv/bin/torchrun --standalone --nproc_per_node="$gpus" -m myopia train --task addition --set steps=200 \
    --set device=cuda --out "$OUT/train-ddp" 2>&1 | tee "$OUT/train-ddp.log"
echo "torchrun ($gpus rank(s), NCCL) 200 steps: $(( $(date +%s) - start )) s" | tee -a "$OUT/times.txt"
cat "$OUT/times.txt"
