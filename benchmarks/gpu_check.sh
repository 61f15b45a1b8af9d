#!/usr/bin/env bash
# The GPU path proven in one run, in at most 8 minutes all told, on a machine with one NVIDIA GPU
# and a Python that already has PyTorch (CUDA build): install the project without pulling CUDA
# wheels, then run benchmarks/gpu_check.py (tests marked gpu, CUDA-vs-CPU labels, OOM recovery,
# bench speed / memory / pipeline), which writes OUT/gpu_check.json and OUT/gpu_check.md.
#
#   bash benchmarks/gpu_check.sh [--out DIR] [--wheels DIR] [--device cuda|cpu] [--short] [--budget SECONDS]
#   PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh --device cpu --short --out /tmp/gc   # as CI runs it
#
# --wheels DIR (or RSINFER_WHEELS): a folder of dependency wheels made by benchmarks/gpu_wheels.sh
#   on a machine with network access; without it, missing dependencies come from the package
#   index if it is reachable. torch always comes from the machine as it is. Where the interpreter
#   already has this checkout installed with every dependency, nothing is installed at all.
# --device cpu: a rehearsal of the same steps on a CPU (smaller sizes, no GPU rows).
# --short: every step at its smallest settings (one model each, small tiles and scenes, 2 runs)
#   and a 240 s budget: the form .ci/run runs (about a minute on a 2-core CPU) so the script
#   cannot rot between GPU runs.
# --budget SECONDS: the whole run, install included [480; 240 with --short].
# Exit status: 0 when every step ran and passed (rows that need a GPU skipped on --device cpu),
#   1 when the install failed or a step failed, overran or was left out for lack of time.
# PYTHON: the interpreter to use [python3].
set -uo pipefail

START=$(date +%s)
BUDGET=               # the whole run, install included (set below when not given)
OUT=gpu_check_out
WHEELS=${RSINFER_WHEELS:-}
DEVICE=cuda
SHORT=()
PY=${PYTHON:-python3}
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --wheels) WHEELS=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --short) SHORT=(--short); shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$BUDGET" ] || BUDGET=$([ ${#SHORT[@]} -gt 0 ] && echo 240 || echo 480)
# A PYTHON given as a path (.venv/bin/python) is made absolute: it runs from other folders below.
case "$PY" in */*) [ -d "$(dirname "$PY")" ] && PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac
cd "$(dirname "$0")/.."
REPO=$PWD
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
[ -n "$WHEELS" ] && WHEELS=$(cd "$WHEELS" && pwd)
LOG="$OUT/install.log"
: >"$LOG"
left() { echo $((START + BUDGET - $(date +%s))); }
note() { echo "[$(( $(date +%s) - START )) s] $*"; }
# The install failed: both outputs say so (one step, "failed"), and the run ends with exit 1.
install_failed() {
  note "$1; see $LOG"
  printf '{"device": "%s", "steps": [{"step": "install", "status": "failed", "note": "%s"}]}\n' "$DEVICE" "$1" \
    >"$OUT/gpu_check.json"
  printf '# GPU check (%s)\n\n| step | status | note |\n|---|---|---|\n| install | failed | %s |\n' "$DEVICE" "$1" \
    >"$OUT/gpu_check.md"
  exit 1
}
"$PY" -c pass >>"$LOG" 2>&1 || install_failed "the interpreter $PY does not run"

# -- install: the project without its dependencies, then whatever dependency is missing --------
# pip must never resolve torch here (it would pull a CUDA build of its own choosing).
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
# import name → distribution name, for the project's non-torch dependencies
DEPS="rasterio:rasterio numpy:numpy click:click rich:rich shapely:shapely zarr:zarr safetensors:safetensors psutil:psutil pytest:pytest onnx:onnx"
# One interpreter start (from another folder: the repository's own rsinfer/ must not stand in for
# an install) that prints "missing MOD DIST" for each dependency that does not import, then
# "rsinfer here" when the rsinfer that imports (models, weights and pipeline included) is this
# checkout's, "rsinfer elsewhere" when it is another copy, "rsinfer absent" when none imports.
probe() {
  (cd / && "$PY" - "$REPO" $DEPS 2>>"$LOG" <<'PY'
import importlib
import os
import sys

for pair in sys.argv[2:]:
    mod, dist = pair.split(":")
    try:
        importlib.import_module(mod)
    except Exception:
        print("missing", mod, dist)
try:
    import rsinfer
    import rsinfer.models
    import rsinfer.pipeline
    import rsinfer.weights_data
except Exception:
    print("rsinfer absent")
else:
    mine = os.path.join(os.path.realpath(sys.argv[1]), "rsinfer", "__init__.py")
    here = os.path.realpath(rsinfer.__file__ or "") == mine
    print("rsinfer", "here" if here else "elsewhere")
PY
  )
}
PROBE=$(probe)
missing=(); while read -r _ _ dist; do missing+=("$dist"); done < <(grep '^missing ' <<<"$PROBE")
if [ ${#missing[@]} -eq 0 ] && grep -qx 'rsinfer here' <<<"$PROBE"; then
  # The fast path (CI, a set-up .venv): this checkout is installed with every dependency; pip is
  # not run at all, so nothing can reach the network or touch torch.
  note "this checkout is already installed in $PY with every dependency: nothing to install"
  INSTALLED="already installed"
  still=()
else
  INSTALLED="pip --no-deps -e ., dependency wheels"
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
    for f in "$REPO"/rsinfer/*; do
      case "$(basename "$f")" in models|weights_data) ;; *) ln -s "$f" "$SITE/rsinfer/$(basename "$f")" ;; esac
    done
    ln -sfn "$REPO/models" "$SITE/rsinfer/models"
    ln -sfn "$REPO/weights" "$SITE/rsinfer/weights_data"
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  fi
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
  PROBE=$(probe)
  still=(); while read -r _ mod _; do still+=("$mod"); done < <(grep '^missing ' <<<"$PROBE")
fi
if grep -qx 'rsinfer absent' <<<"$PROBE" || ! grep -q '^rsinfer ' <<<"$PROBE"; then
  (cd / && "$PY" -c "import rsinfer.pipeline") >>"$LOG" 2>&1  # the traceback, for the log
  install_failed "rsinfer does not import (missing: ${still[*]:-none})"
fi
grep -qx 'rsinfer elsewhere' <<<"$PROBE" && note "note: rsinfer imports from a copy other than $REPO"
note "installed in $(( $(date +%s) - START )) s${still[*]:+ (still missing: ${still[*]})}"
printf '{"step": "install", "label": "install (%s)", "status": "ok", "seconds": %d, "note": "missing before: %s; still missing: %s; wheels: %s"}\n' \
  "$INSTALLED" $(( $(date +%s) - START )) "${missing[*]:-none}" "${still[*]:-none}" "$( [ ${#missing[@]} -eq 0 ] && echo 'not needed' || echo "${WHEELS:-package index}")" >"$OUT/install.json"

# -- the checks: every step under its own limit and the global deadline -------------------------
DEADLINE=$((START + BUDGET - 10))
timeout $(( DEADLINE - $(date +%s) + 5 )) "$PY" benchmarks/gpu_check.py --out "$OUT" --device "$DEVICE" \
  --deadline "$DEADLINE" ${SHORT[@]+"${SHORT[@]}"}
rc=$?
note "done in $(( $(date +%s) - START )) s (exit $rc): $OUT/gpu_check.json, $OUT/gpu_check.md"
exit $rc
