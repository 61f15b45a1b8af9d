"""Weights: the manifest, safe checkpoint reading, and mapping foreign key layouts onto ours.

Checkpoints are untrusted input: ``.safetensors`` files are read as tensors only, and
PyTorch files go through ``torch.load(weights_only=True)``, which refuses pickles that
would run code. A zip-format file that it refuses because it pickles other objects beside
the weights (a full mmengine/mmseg training checkpoint: its ``message_hub`` holds
``HistoryBuffer`` objects) is read again by :func:`restricted_load`, which never imports or
calls anything outside a short allowlist, so the ``state_dict`` can still be taken.

``--weights`` takes a file or the name of an entry in the bundled manifest
(``weights/manifest.json``, or ``RSINFER_WEIGHTS_MANIFEST``); manifest files are verified
against their sha256 before use, and an entry carries the config its weights were trained with (classes, bands,
normalization), which overrides the model's defaults. An entry marked ``default`` is
what a model runs with when no ``--weights`` is given; ``--weights random`` asks for
none.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import pickle
import pickletools
import re
import sys
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .errors import ModelError

# Prefixes training wrappers add: DataParallel/DDP (module.), Lightning GeoSeg (net.).
WRAPPER_PREFIXES = ("module.", "net.")
# Containers training scripts save the state dict under.
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "net")
# Config fields a manifest entry may override (lists in JSON become tuples); the last four
# belong to global-local models (models.config.GlobalLocalSpec).
CONFIG_OVERRIDES = (
    "class_names",
    "class_colors",
    "in_bands",
    "mean",
    "std",
    "input_range",
    "tile",
    "overlap",
    "global_size",
    "region",
    "neighbourhood",
    "procedure",
)


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
        try:
            return config_changes(self.config)
        except ValueError as err:
            raise ModelError(f"weights {self.name}: {err} in the manifest") from None


def config_changes(fields: dict) -> dict:
    """Manifest config fields (JSON values) as :meth:`ModelConfig.replace` arguments (lists → tuples)."""
    out = {}
    for key, value in fields.items():
        if key not in CONFIG_OVERRIDES:
            raise ValueError(f"unknown config field {key!r} (known: {', '.join(CONFIG_OVERRIDES)})")
        if isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        out[key] = value
    return out


def class_palette(n: int) -> list[list[int]]:
    """``n`` distinct colours for classes that come with none: hues a golden angle apart."""
    import colorsys

    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.381966) % 1.0, 0.7, 0.95)
        out.append([round(255 * r), round(255 * g), round(255 * b)])
    return out


def infer_shapes(model_name: str, config: Any, state: dict[str, torch.Tensor]) -> dict[str, int]:
    """Classes and bands the checkpoint was trained with, where they differ from ``config``.

    Read from the layers whose shapes disagree with the model built for ``config``: a layer
    whose first dimension is the class count (classifiers) gives ``classes``, a convolution
    whose input channels are the band count (the stem) gives ``bands``. Returns only what
    differs, e.g. ``{"classes": 7}``; raises ValueError when the layers disagree.
    """
    from rsinfer.models import create_model

    with torch.device("meta"):
        net = create_model(model_name, config)
    mapped = adapt_state_dict(model_name, net, state)
    found: dict[str, set[int]] = {"classes": set(), "bands": set()}
    for key, own in net.state_dict().items():
        theirs = mapped.get(key)
        if theirs is None or theirs.shape == own.shape or theirs.ndim != own.ndim or own.ndim == 0:
            continue
        if own.shape[0] == config.num_classes and theirs.shape[1:] == own.shape[1:]:
            found["classes"].add(int(theirs.shape[0]))
        elif (
            own.ndim == 4
            and own.shape[1] == config.num_bands
            and theirs.shape[0] == own.shape[0]
            and theirs.shape[2:] == own.shape[2:]
        ):
            found["bands"].add(int(theirs.shape[1]))
    out = {}
    for what, values in found.items():
        if len(values) > 1:
            raise ValueError(f"the checkpoint's layers disagree on its {what}: {sorted(values)}")
        if values:
            out[what] = values.pop()
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


# --- reading pickled checkpoints without running their code ----------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def first_line(err: BaseException) -> str:
    """The first line of an error's message, without terminal colour codes."""
    text = _ANSI.sub("", str(err)).strip()
    return text.splitlines()[0] if text else type(err).__name__


class Inert:
    """What an unknown pickled global becomes: a class that takes any arguments and state and
    does nothing with them (instances keep them in ``args`` / ``state`` for inspection)."""

    def __new__(cls, *args: Any, **kwargs: Any):
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state


@dataclass(frozen=True)
class _StorageType:
    """A pickled ``torch.<Type>Storage`` reference: only its dtype is used."""

    dtype: torch.dtype


def _storage_dtypes() -> dict[str, torch.dtype]:
    out = {"UntypedStorage": torch.uint8}
    with warnings.catch_warnings():  # reading a legacy storage class's dtype warns that TypedStorage is deprecated
        warnings.simplefilter("ignore")
        for name in dir(torch):
            cls = getattr(torch, name, None)
            if name.endswith("Storage") and isinstance(cls, type) and issubclass(cls, torch.storage._LegacyStorage):
                out[name] = cls.dtype
    return out


# The only globals a checkpoint may name that are used as what they are: containers, sizes, and
# torch's own tensor rebuilders (those torch.load(weights_only=True) allows). Every other
# global becomes a fresh Inert subclass; nothing is imported.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: io.BytesIO, reader: Any, byteorder: str | None):
        super().__init__(data)
        self._reader = reader
        self._byteorder = byteorder
        self._storages: dict[str, torch.storage.TypedStorage] = {}
        self._dtypes = _storage_dtypes()
        self._inert: dict[tuple[str, str], type] = {}
        self.unknown: list[str] = []

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in self._dtypes:
            return _StorageType(self._dtypes[name])
        key = (module, name)
        if key not in self._inert:
            self._inert[key] = type(name, (Inert,), {"__module__": f"rsinfer.inert.{module}", "__qualname__": name})
            self.unknown.append(f"{module}.{name}")
        return self._inert[key]

    def persistent_load(self, pid: Any) -> Any:
        """Storages of the zip format: ``('storage', type, key, location, numel)``, read from
        the archive's ``data/<key>`` record by torch's own zip reader, onto the CPU."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.60}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(numel, int):
            raise pickle.UnpicklingError("malformed storage reference")
        key = key.decode() if isinstance(key, bytes) else str(key)
        if key not in self._storages:
            dtype = storage_type.dtype
            nbytes = numel * torch._utils._element_size(dtype)
            untyped = self._reader.get_storage_from_record(f"data/{key}", nbytes, torch.UntypedStorage)
            untyped = untyped._typed_storage()._untyped_storage
            if self._byteorder is not None and self._byteorder != sys.byteorder:
                untyped.byteswap(dtype)
            self._storages[key] = torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)
        return self._storages[key]


def restricted_load(path: str | Path) -> tuple[Any, list[str]]:
    """Unpickle a zip-format PyTorch file without importing or calling anything outside
    :data:`_ALLOWED`; returns the object and the globals that became :class:`Inert` stand-ins.

    Storages come through torch's zip reader as in ``torch.load``; tensors are rebuilt by
    torch's ``_rebuild_tensor_v2``. Anything else the file names (classes, functions such as
    ``os.system``) is replaced by an inert class, so no pickled code runs.
    """
    reader: Any = torch._C.PyTorchFileReader(str(path))
    byteorder = reader.get_record("byteorder").decode() if reader.has_record("byteorder") else None
    data = reader.get_record("data.pkl")
    # EXT opcodes name objects through copyreg's process-wide extension cache, which can
    # hand back an object without asking find_class: refused (torch.save never writes them).
    for opcode, _arg, _pos in pickletools.genops(data):
        if opcode.name.startswith("EXT"):
            raise pickle.UnpicklingError(f"{opcode.name} opcode (copyreg extension) is not supported")
    unpickler = _RestrictedUnpickler(io.BytesIO(data), reader, byteorder)
    return unpickler.load(), unpickler.unknown


_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _load_pickled(path: Path) -> object:
    """``torch.load(weights_only=True)``; when it refuses a zip-format file for its other
    objects, :func:`restricted_load`; else one line naming the refused class and the fix."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if zipfile.is_zipfile(path):
            return restricted_load(path)[0]
        found = _REFUSED_GLOBAL.search(_ANSI.sub("", str(err)))
        what = found.group(1) if found else first_line(err)
        raise ModelError(
            f"{path}: cannot load checkpoint safely: it pickles {what} beside the weights, in torch's "
            "legacy (non-zip) format; keep only its state_dict (e.g. mmseg's tools/model_converters/"
            "publish_model.py, or torch.save(checkpoint['state_dict'], ...) where the file is trusted)"
        ) from None


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
            state = _load_pickled(path)
        else:
            raise ModelError(f"{path}: unknown checkpoint type {suffix or '(none)'}; use .safetensors, .pt or .pth")
    except ModelError:
        raise
    except Exception as err:  # unpickling refusals, truncated files, bad headers
        raise ModelError(f"{path}: cannot load checkpoint safely ({first_line(err)[:300]})") from None
    for key in STATE_DICT_KEYS:
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: checkpoint does not hold a state dict of tensors")
    # detach: plain tensors, whatever hooks or flags the pickle gave them
    return {str(k): v.detach() for k, v in state.items()}


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
