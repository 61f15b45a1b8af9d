#!/usr/bin/env bash
# Create .venv and install rsinfer into it.
#   bash scripts/setup.sh          # runtime
#   bash scripts/setup.sh --test   # runtime + test dependencies
# Without an NVIDIA GPU, torch is the CPU build (no CUDA wheels) and ONNX Runtime the CPU one.
# Set RSINFER_TORCH_INDEX to a PyTorch wheel index (e.g. its CPU index) where plain
# `pip install torch==X` would bring a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION="${RSINFER_TORCH_VERSION:-2.13.0}"
extras=""
[ "${1:-}" = "--test" ] && extras="test"

python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet)

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "${pip[@]}" "torch==${TORCH_VERSION}"
    ort="gpu"
else
    if [ -n "${RSINFER_TORCH_INDEX:-}" ]; then
        "${pip[@]}" "torch==${TORCH_VERSION}" --index-url "$RSINFER_TORCH_INDEX"
    else
        "${pip[@]}" "torch==${TORCH_VERSION}"
    fi
    ort="cpu"
fi
"${pip[@]}" -e ".[${ort}${extras:+,$extras}]"
.venv/bin/python -c "import torch, rsinfer.models; print('rsinfer ready: torch', torch.__version__, '| cuda', torch.cuda.is_available())"
