#!/usr/bin/env bash
# The device check, for a machine with an NVIDIA GPU (one call, at most 8 minutes, no network):
#   1. the CUDA-marked tests (scan parity on CUDA, mamba-ssm's kernel when installed, DepMamba CUDA vs CPU);
#   2. mamba-ssm: installed from a wheel in .whl/ when one was brought along (building it from source takes
#      longer than the budget, so it is not attempted);
#   3. one DepMamba epoch on D-Vlog-size synthetic data, float32 and bf16 autocast: seconds per epoch, peak memory.
# Uses the machine's python/torch; missing pure-Python dependencies are installed from .whl/ when present.
# Run from anywhere:  bash bench/gpu.sh      (PYTHON=python3.11 bash bench/gpu.sh to pick the interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
start=$(date +%s)
left() { echo $(( 470 - ($(date +%s) - start) )); }

echo "== environment"
"$PY" - <<'PYEOF' || exit 1
import sys, torch
print("python", sys.version.split()[0], "| torch", torch.__version__, "| CUDA", torch.version.cuda,
      "| available:", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("GPU:", p.name, f"{p.total_memory / 2**30:.0f} GiB", f"sm_{p.major}{p.minor}")
PYEOF
nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv 2>/dev/null || true

for mod in numpy pytest; do
  if ! "$PY" -c "import $mod" 2>/dev/null; then
    if ls .whl/*.whl >/dev/null 2>&1; then
      "$PY" -m pip install -q --no-index --find-links .whl "$mod" || echo "could not install $mod from .whl/"
    else
      echo "missing $mod and no .whl/ folder: the checks that need it will fail"
    fi
  fi
done

echo "== mamba-ssm"
if "$PY" -c "import mamba_ssm" 2>/dev/null; then
  echo "mamba-ssm present"
elif ls .whl/mamba_ssm*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --find-links .whl mamba-ssm causal-conv1d && echo "installed from .whl/"
else
  echo "mamba-ssm not installed and no wheel in .whl/: its parity test is skipped (the chunked scan is checked)"
fi

echo "== CUDA tests ($(left) s left)"
timeout $(( $(left) > 200 ? 200 : $(left) )) "$PY" -m pytest -q -p no:cacheprovider -o addopts="" -m cuda tests/test_gpu.py
echo "pytest exit: $?"

echo "== DepMamba epoch, fp32 and bf16 ($(left) s left)"
timeout $(( $(left) > 20 ? $(left) : 20 )) "$PY" bench/gpu_epoch.py --precision fp32 bf16
echo "epoch bench exit: $?"
echo "== gpu.sh took $(( $(date +%s) - start )) s"
