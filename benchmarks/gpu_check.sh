#!/usr/bin/env bash
# GPU check for a machine with one NVIDIA GPU, torch and nvcc installed, and no network.
# Builds the CUDA kernels with all cores for this GPU, runs every CUDA test (each CUDA kernel
# against the CPU reference on fresh random inputs) and the GPU benchmarks, writes full logs to
# LOG_DIR and prints a short table last. Budget: 8 minutes in all (each step has a timeout).
#
#   bash benchmarks/gpu_check.sh LOG_DIR        (PYTHON=... to pick the interpreter)
set -uo pipefail
LOG=${1:?usage: benchmarks/gpu_check.sh LOG_DIR}
mkdir -p "$LOG"
LOG=$(cd "$LOG" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
t0=$(date +%s)
status=0

{ nvidia-smi; $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"; } > "$LOG/machine.txt" 2>&1
ARCH=$($PY -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())" 2>/dev/null || echo "9.0")

echo "[gpu_check] 1/3 build (sm ${ARCH}, $(nproc) jobs)"
rm -f srkd_ext/_C*.so
if ! SRKD_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS=$(nproc) timeout 240 \
     $PY setup.py build_ext --inplace --build-temp build/gpu --build-lib build/gpu-lib > "$LOG/build.log" 2>&1; then
  echo "[gpu_check] build FAILED: see $LOG/build.log"; tail -30 "$LOG/build.log"; exit 1
fi
$PY .ci/ptxas_report.py "$LOG/build.log" csrc/cuda > "$LOG/ptxas.txt" 2>&1 || status=1

echo "[gpu_check] 2/3 CUDA tests (kernels against the CPU reference)"
timeout 180 $PY -m pytest python_tests -m cuda -q -p no:cacheprovider \
  --junitxml="$LOG/cuda-tests.xml" > "$LOG/cuda-tests.log" 2>&1 || status=1

echo "[gpu_check] 3/3 GPU benchmarks"
timeout 150 $PY -m pytest benchmarks -m cuda --benchmark-only -q -p no:cacheprovider \
  --benchmark-json="$LOG/gpu-bench.json" > "$LOG/gpu-bench.log" 2>&1 || status=1

$PY benchmarks/gpu_check_summary.py "$LOG" || status=1
echo "[gpu_check] done in $(( $(date +%s) - t0 )) s, logs in $LOG, exit $status"
exit $status
