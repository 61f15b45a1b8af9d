"""Optional packages: checked before any work, with one line naming the extra that installs them."""

from __future__ import annotations

import importlib.util

from .errors import RsinferError

ONNX_EXTRA = "pip install 'rsinfer[cpu]' (or 'rsinfer[gpu]' on a CUDA machine)"


def require(modules: tuple[str, ...], purpose: str, install: str) -> None:
    """Raise one RsinferError naming what is missing when any of ``modules`` cannot be imported."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise RsinferError(f"{purpose} needs {' and '.join(missing)}: {install}")


def require_onnx(export: bool) -> None:
    """ONNX Runtime, and onnx itself when a graph must be exported (no --onnx file given)."""
    require(("onnxruntime", "onnx") if export else ("onnxruntime",), "--backend onnx", ONNX_EXTRA)
