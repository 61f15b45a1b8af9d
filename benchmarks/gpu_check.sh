#!/usr/bin/env bash
# The GPU path proven in one run, in at most 8 minutes all told, on a machine with one NVIDIA GPU
# and a Python that already has PyTorch (CUDA build): install the project without pulling CUDA
# wheels, then run benchmarks/gpu_check.py (tests marked gpu, CUDA-vs-CPU labels, OOM recovery,
# bench speed / memory / pipeline), which writes OUT/gpu_check.json and OUT/gpu_check.md.
#
#   bash benchmarks/gpu_check.sh [--out DIR] [--wheels DIR] [--device cuda|cpu] [--budget SECONDS]
#
# --wheels DIR (or RSINFER_WHEELS): a folder of dependency wheels made by benchmarks/gpu_wheels.sh
#   on a machine with network access; without it, missing dependencies come from the package
#   index if it is reachable. torch always comes from the machine as it is.
# --device cpu: a rehearsal of the same steps on a CPU (smaller sizes, no GPU rows).
# PYTHON: the interpreter to use [python3].
set -uo pipefail

START=$(date +%s)
BUDGET=480            # the whole run, install included
OUT=gpu_check_out
WHEELS=${RSINFER_WHEELS:-}
DEVICE=cuda
PY=${PYTHON:-python3}
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --wheels) WHEELS=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
[ -n "$WHEELS" ] && WHEELS=$(cd "$WHEELS" && pwd)
LOG="$OUT/install.log"
: >"$LOG"
left() { echo $((START + BUDGET - $(date +%s))); }
note() { echo "[$(( $(date +%s) - START )) s] $*"; }

# -- install: the project without its dependencies, then whatever dependency is missing --------
# pip must never resolve torch here (it would pull a CUDA build of its own choosing).
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
note "installing the project (no dependencies, no build isolation)"
if ! timeout 90 "$PY" -m pip install -q --no-deps --no-build-isolation -e . >>"$LOG" 2>&1; then
  note "pip install -e . failed (see $LOG): the package is put on PYTHONPATH instead"
fi
# Without the editable install (no pip, no setuptools/wheel to build it), the package is a folder
# of links on PYTHONPATH: rsinfer/ as it is, with models/ and weights/ where setuptools puts them.
# (Checked from another folder: the repository's own rsinfer/ must not stand in for an install.)
if ! (cd / && "$PY" -c "import rsinfer.models, rsinfer.weights_data") >/dev/null 2>&1; then
  SITE="$OUT/site"
  rm -rf "$SITE" && mkdir -p "$SITE/rsinfer"
  for f in "$PWD"/rsinfer/*; do
    case "$(basename "$f")" in models|weights_data) ;; *) ln -s "$f" "$SITE/rsinfer/$(basename "$f")" ;; esac
  done
  ln -sfn "$PWD/models" "$SITE/rsinfer/models"
  ln -sfn "$PWD/weights" "$SITE/rsinfer/weights_data"
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
# import name → distribution name, for the project's non-torch dependencies
DEPS="rasterio:rasterio numpy:numpy click:click rich:rich shapely:shapely zarr:zarr safetensors:safetensors psutil:psutil pytest:pytest onnx:onnx"
missing=()
for pair in $DEPS; do
  mod=${pair%%:*}; dist=${pair##*:}
  (cd / && "$PY" -c "import $mod") 2>/dev/null || missing+=("$dist")
done
if [ ${#missing[@]} -gt 0 ]; then
  note "missing: ${missing[*]}"
  if [ -n "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    # The missing ones, resolved within the folder (it holds their own dependencies too); what the
    # machine already has and satisfies them (numpy, say) stays as it is. None of them needs torch.
    timeout $(( $(left) > 150 ? 120 : $(left) / 2 )) "$PY" -m pip install -q --no-index \
      --find-links "$WHEELS" "${missing[@]}" >>"$LOG" 2>&1 \
      || note "installing from $WHEELS failed (see $LOG)"
  else
    note "no wheel folder: trying the package index"
    # The dependencies with theirs, but never torch: its constraint is satisfied by the machine's.
    timeout $(( $(left) > 150 ? 120 : $(left) / 2 )) "$PY" -m pip install -q "${missing[@]}" >>"$LOG" 2>&1 \
      || note "the package index is not reachable or refused (see $LOG)"
  fi
fi
still=()
for pair in $DEPS; do
  mod=${pair%%:*}
  (cd / && "$PY" -c "import $mod") 2>/dev/null || still+=("$mod")
done
if ! (cd / && "$PY" -c "import rsinfer.pipeline") >>"$LOG" 2>&1; then
  note "rsinfer does not import (missing: ${still[*]:-none}); see $LOG"
  printf '{"device": "%s", "steps": [{"step": "install", "status": "failed", "note": "rsinfer does not import; missing: %s"}]}\n' \
    "$DEVICE" "${still[*]:-none}" >"$OUT/gpu_check.json"
  exit 1
fi
note "installed in $(( $(date +%s) - START )) s${still[*]:+ (still missing: ${still[*]})}"
printf '{"step": "install", "label": "install (pip --no-deps -e ., dependency wheels)", "status": "ok", "seconds": %d, "note": "missing before: %s; still missing: %s; wheels: %s"}\n' \
  $(( $(date +%s) - START )) "${missing[*]:-none}" "${still[*]:-none}" "$( [ ${#missing[@]} -eq 0 ] && echo 'not needed' || echo "${WHEELS:-package index}")" >"$OUT/install.json"

# -- the checks: every step under its own limit and the global deadline -------------------------
DEADLINE=$((START + BUDGET - 10))
timeout $(( DEADLINE - $(date +%s) + 5 )) "$PY" benchmarks/gpu_check.py --out "$OUT" --device "$DEVICE" \
  --deadline "$DEADLINE"
rc=$?
note "done in $(( $(date +%s) - START )) s (exit $rc): $OUT/gpu_check.json, $OUT/gpu_check.md"
exit $rc
