"""Loading checkpoints safely.

Checkpoints are untrusted input: ``.safetensors`` files are read as tensors only, and
PyTorch files go through ``torch.load(weights_only=True)``, which refuses pickles that
would run code.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from .errors import ModelError

# Prefixes training wrappers add: DataParallel/DDP (module.), Lightning GeoSeg (net.).
WRAPPER_PREFIXES = ("module.", "net.")
# Containers training scripts save the state dict under.
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "net")


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{name: tensor}`` dict, without running any code."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        elif suffix in (".pt", ".pth", ".bin", ".ckpt"):
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        else:
            raise ModelError(f"{path}: unknown checkpoint type {suffix or '(none)'}; use .safetensors, .pt or .pth")
    except ModelError:
        raise
    except Exception as err:  # unpickling refusals, truncated files, bad headers
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{path}: cannot load checkpoint safely ({first[:300]})") from None
    for key in STATE_DICT_KEYS:
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: checkpoint does not hold a state dict of tensors")
    return dict(state)


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes (``module.``, ``net.``) shared by every key."""
    for prefix in WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly; on mismatch, one error listing missing/unexpected keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{label}: {', '.join(items[:5])}{more}")
        raise ModelError(f"{source}: checkpoint does not fit the model: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)
