#!/usr/bin/env bash
# Build the folder of dependency wheels benchmarks/gpu_check.sh installs from, on a machine with
# network access, for the GPU machine's Python and platform (which need not be this machine's).
#
#   bash benchmarks/gpu_wheels.sh [--dir wheels] [--python-version 3.12] [--with-onnxruntime-gpu]
#                                 [--exclude numpy,onnx,protobuf]
#
# --exclude: distributions the GPU machine already has, left out of the folder to keep it small
#   (gpu_check.sh installs only what is missing there, and keeps what is installed).
# Only the project's non-torch dependencies (and theirs) are fetched: torch and the CUDA libraries
# come with the GPU machine. --with-onnxruntime-gpu adds ONNX Runtime's GPU build (hundreds of MB),
# for the ONNX Runtime CUDA and TensorRT rows; leave it out where the machine already has it.
# PYTHON: the interpreter whose pip downloads [python3].
set -euo pipefail

DIR=wheels
PYVER=3.12
ORT_GPU=0
EXCLUDE=
PY=${PYTHON:-python3}
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR=$2; shift 2 ;;
    --python-version) PYVER=$2; shift 2 ;;
    --with-onnxruntime-gpu) ORT_GPU=1; shift ;;
    --exclude) EXCLUDE=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "gpu_wheels.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
mkdir -p "$DIR"

# The project's dependencies, from pyproject.toml, without torch (the machine's own build is used).
mapfile -t REQS < <("$PY" - <<'PYEOF'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
for d in deps:
    if re.match(r"torch\b", d) is None:
        print(d)
PYEOF
)
REQS+=("pytest>=8" "onnx>=1.15")
[ "$ORT_GPU" = 1 ] && REQS+=("onnxruntime-gpu>=1.18")

PLATFORMS=()
for n in 17 27 28 31 34; do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform linux_x86_64)

# Binary wheels only, resolved for the target interpreter; pip fetches each requirement's own
# requirements too. torch is kept out: a dependency that names it is satisfied on the machine.
"$PY" -m pip download -q --only-binary=:all: --python-version "$PYVER" --implementation cp \
  "${PLATFORMS[@]}" -d "$DIR" "${REQS[@]}"
# Anything torch-related a dependency may have pulled in would be a second, CUDA-pinned torch.
rm -f "$DIR"/torch-*.whl "$DIR"/nvidia_*.whl "$DIR"/triton-*.whl
for name in ${EXCLUDE//,/ }; do
  rm -f "$DIR/$(echo "$name" | tr '-' '_')"-[0-9]*.whl
done
ls -1 "$DIR" | sed 's/^/  /'
du -sh "$DIR"
