"""Weights: the manifest, safe checkpoint reading, and mapping foreign key layouts onto ours.

Checkpoints are untrusted input: ``.safetensors`` files are read as tensors only, and
PyTorch files go through ``torch.load(weights_only=True)``, which refuses pickles that
would run code.

``--weights`` takes a file or the name of an entry in the bundled manifest
(``weights/manifest.json``, or ``RSINFER_WEIGHTS_MANIFEST``); manifest files are verified
against their sha256 before use, and an entry carries the config its weights were trained with (classes, bands,
normalization), which overrides the model's defaults. An entry marked ``default`` is
what a model runs with when no ``--weights`` is given; ``--weights random`` asks for
none.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import torch
import torch.nn as nn

from .errors import ModelError

# Prefixes training wrappers add: DataParallel/DDP (module.), Lightning GeoSeg (net.).
WRAPPER_PREFIXES = ("module.", "net.")
# Containers training scripts save the state dict under.
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "net")
# Config fields a manifest entry may override (lists in JSON become tuples).
CONFIG_OVERRIDES = ("class_names", "class_colors", "in_bands", "mean", "std", "input_range", "tile", "overlap")


@dataclass(frozen=True)
class WeightEntry:
    """One manifest entry: a checkpoint file and what it is."""

    name: str
    file: str  # relative to the manifest's folder
    model: str
    sha256: str
    config: dict = field(default_factory=dict)
    source: str = ""
    license: str = ""
    description: str = ""
    # The weights `segment --model MODEL` uses when no --weights is given.
    default: bool = False

    def config_overrides(self) -> dict:
        out = {}
        for key, value in self.config.items():
            if key not in CONFIG_OVERRIDES:
                raise ModelError(f"weights {self.name}: unknown config field {key!r} in the manifest")
            if isinstance(value, list):
                value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            out[key] = value
        return out


def bundled_weights_dir() -> Path:
    """The installed copy of the repository's ``weights/`` folder."""
    return Path(str(resources.files("rsinfer.weights_data")))


def manifest_path() -> Path:
    """``RSINFER_WEIGHTS_MANIFEST`` when set (a user's own manifest), else the bundled one."""
    env = os.environ.get("RSINFER_WEIGHTS_MANIFEST")
    return Path(env) if env else bundled_weights_dir() / "manifest.json"


def load_manifest(path: str | Path | None = None) -> dict[str, WeightEntry]:
    path = Path(path) if path else manifest_path()
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
        return {name: WeightEntry(name=name, **fields) for name, fields in raw.get("weights", {}).items()}
    except (ValueError, TypeError) as err:
        raise ModelError(f"{path}: not a valid weights manifest ({err})") from None


def save_manifest_entry(manifest: str | Path, entry: WeightEntry) -> None:
    """Add or replace ``entry`` in the manifest file (created if absent)."""
    manifest = Path(manifest)
    raw = json.loads(manifest.read_text()) if manifest.exists() else {"weights": {}}
    fields = asdict(entry)
    del fields["name"]
    raw.setdefault("weights", {})[entry.name] = fields
    raw["weights"] = dict(sorted(raw["weights"].items()))
    manifest.write_text(json.dumps(raw, indent=2) + "\n")


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 of a model's state dict (names and values): identifies the weights that ran."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# `--weights random`: run the network untrained (benchmarks, smoke tests), on purpose.
RANDOM_WEIGHTS = "random"


def default_weights(model: str, manifest: str | Path | None = None) -> str | None:
    """Name of the manifest entry marked ``default`` for ``model``, or None when it has none."""
    defaults = sorted(e.name for e in load_manifest(manifest).values() if e.model == model and e.default)
    if len(defaults) > 1:
        raise ModelError(f"weights manifest: model {model} has several default weights ({', '.join(defaults)})")
    return defaults[0] if defaults else None


def resolve_weights(spec: str, manifest: str | Path | None = None) -> tuple[Path, WeightEntry | None]:
    """A checkpoint file path, or a manifest entry name (checksum verified)."""
    path = Path(spec)
    if path.is_file():
        return path, None
    manifest = Path(manifest) if manifest else manifest_path()
    entries = load_manifest(manifest)
    entry = entries.get(spec)
    if entry is None:
        known = ", ".join(sorted(entries)) or "none"
        raise ModelError(f"{spec}: no such checkpoint file, nor a weights manifest entry (entries: {known})")
    file = manifest.parent / entry.file
    if not file.is_file():
        raise ModelError(f"weights {spec}: file {file} is missing")
    digest = sha256_of(file)
    if digest != entry.sha256:
        raise ModelError(
            f"weights {spec}: {file} fails its checksum (sha256 {digest[:12]}…, manifest {entry.sha256[:12]}…)"
        )
    return file, entry


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{name: tensor}`` dict, without running any code."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint file")
    suffix = path.suffix.lower()
    state: object
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
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def adapt_state_dict(model_name: str, model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our layout as it is; otherwise the model's key map (authors' layouts) renames/drops keys.

    Keys the map does not know are kept, so :func:`load_into` reports them as unexpected.
    """
    from rsinfer.models import get_entry

    state = strip_prefixes(state)
    own = set(model.state_dict())
    key_map = get_entry(model_name).key_map
    if key_map is None or own <= set(state):
        return state
    out = {}
    for key, value in state.items():
        try:
            new = key_map(key)
        except KeyError:
            new = key
        if new is not None:
            out[new] = value
    return out


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly; on mismatch, one error listing missing/unexpected keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{len(items)} {label}: {', '.join(items[:5])}{more}")
        raise ModelError(f"{source}: checkpoint does not fit the model: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)


def load_checkpoint(model_name: str, model: nn.Module, path: str | Path) -> None:
    """Read ``path`` safely, map its layout and load it strictly into ``model``."""
    load_into(model, adapt_state_dict(model_name, model, read_checkpoint(path)), str(path))


def save_safetensors(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write a clean safetensors file (contiguous, unshared tensors)."""
    from safetensors.torch import save_file

    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    save_file(clean, str(path), metadata=metadata or {})
