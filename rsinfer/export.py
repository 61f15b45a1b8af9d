"""Exporting models to ONNX, checked and verified against PyTorch before anything is reported.

A sliding-window model becomes one graph, ``input`` (N, C, H, W) normalized → ``logits``
(N, K, H, W), with dynamic batch and spatial axes when the graph is verified to compute at
another size, else with ``H = W = T``, the tile padded to the model's size rule. A
global-local model becomes two graphs: ``NAME.onnx`` (patches, boxes and the
context tensors → logits, in the model's current mode) and ``NAME.global.onnx`` (a global
view of any size → the context tensors).

Files are written under a temporary name and renamed once they pass onnx's checker and
match PyTorch on a random batch.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from rsinfer.models import ModelConfig
from rsinfer.models.global_local import GlobalLocalModel, global_view_size

from .cache import cache_root
from .errors import ModelError
from .io.outputs import commit, partial_path, remove

log = logging.getLogger("rsinfer")

OPSET = 17
TOLERANCE = 1e-3  # max |logit difference| accepted in fp32


@dataclass
class ExportResult:
    paths: list[str]
    max_abs_diff: float
    # The CPU sessions that verified each graph, by final path: a CPU backend reuses them
    # rather than paying for building a session on a large graph twice.
    sessions: dict = field(default_factory=dict)


def global_graph_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.stem + ".global" + p.suffix)


class _GlobalGraph(nn.Module):
    def __init__(self, model: GlobalLocalModel, keys: list[str]):
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, view):
        ctx = self.model.forward_global(view)
        return tuple(ctx[k] for k in self.keys)


class _LocalGraph(nn.Module):
    def __init__(self, model: GlobalLocalModel, keys: list[str]):
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, patches, boxes, *context):
        return self.model.predict_patches(patches, dict(zip(self.keys, context)), boxes)


def _export(
    module: nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str], dynamic_axes: dict
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about Python-int shapes
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    import onnx

    onnx.checker.check_model(str(path), full_check=True)


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def export_onnx(
    model: nn.Module, config: ModelConfig, tile: int, path: str | Path, batch: int = 2, seed: int = 0
) -> ExportResult:
    """Export ``model`` for tiles of ``tile`` px and verify it against PyTorch on CPU."""
    model = model.to("cpu").eval()
    side = config.padded_size(tile)
    path = Path(path)
    gen = torch.Generator().manual_seed(seed)
    patches = torch.randn(batch, config.num_bands, side, side, generator=gen)
    partials: list[tuple[Path, Path]] = []
    sessions: dict = {}
    try:
        try:
            diff = _export_verified(model, config, side, path, patches, gen, partials, sessions)
        except (RuntimeError, ValueError, NotImplementedError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(f"{path}: cannot export {config.name}: {first[:400]}") from None
        if not diff <= TOLERANCE:  # also catches NaN
            raise ModelError(
                f"{path}: the ONNX graph differs from PyTorch by {diff:.2e} (> {TOLERANCE:.0e}); not written"
            )
        for partial, final in partials:
            commit(partial, final)
        return ExportResult(
            [str(f) for _, f in partials],
            diff,
            {str(final): sessions[str(partial)] for partial, final in partials if str(partial) in sessions},
        )
    finally:
        for partial, _ in partials:
            remove(partial)


def _export_verified(
    model: nn.Module, config: ModelConfig, side: int, path: Path, patches, gen, partials: list, sessions: dict
) -> float:
    """Export to partial files; return the max |difference| from PyTorch on the test batch."""
    if config.is_global_local:
        assert isinstance(model, GlobalLocalModel)
        return _export_global_local(model, config, side, path, patches, gen, partials, sessions)
    partial = Path(partial_path(path))
    partials.append((partial, path))
    # Spatial axes are dynamic when the traced graph really computes at any size (it does
    # unless the network turns shapes into constants): a tile cut short by the raster's edge
    # then runs as it is, padded only to the size rule. Checked on a second, non-square size;
    # otherwise the graph keeps the tile's size and the backend pads to it.
    _export(model, (patches,), partial, ["input"], ["logits"], SPATIAL_AXES)
    session = sessions[str(partial)] = _session(partial)
    other = config.padded_size(max(config.min_tile, side * 3 // 4))
    if other == side:  # a model whose smallest tile is this one: probe a larger size instead
        other = config.padded_size(side + 1)
    probe = torch.randn(1, config.num_bands, other, side, generator=gen)
    if not _graph_diff(model, session, probe) <= TOLERANCE:
        _export(model, (patches,), partial, ["input"], ["logits"], BATCH_AXIS)
        session = sessions[str(partial)] = _session(partial)
    return _graph_diff(model, session, patches)


SPATIAL_AXES = {"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}
BATCH_AXIS = {"input": {0: "batch"}, "logits": {0: "batch"}}


def _graph_diff(model: nn.Module, session, patches: torch.Tensor) -> float:
    """Max |logits(graph) - logits(torch)| on ``patches``; inf when the graph cannot run them."""
    with torch.inference_mode():
        ref = model(patches).numpy()
    try:
        got = session.run(None, {"input": patches.numpy()})[0]
    except Exception:  # ONNX Runtime's shape errors: sizes baked into the graph
        return float("inf")
    return float(np.abs(got - ref).max()) if got.shape == ref.shape else float("inf")


def graph_input_size(session) -> tuple[int, int] | None:
    """The (height, width) a graph's first input is fixed to, or None when its spatial axes are dynamic."""
    shape = session.get_inputs()[0].shape
    h, w = shape[2], shape[3]
    return (h, w) if isinstance(h, int) and isinstance(w, int) else None


def _export_global_local(
    model: GlobalLocalModel, config: ModelConfig, side: int, path: Path, patches, gen, partials: list, sessions: dict
) -> float:
    gh, gw = global_view_size(side * 3, side * 2, model.global_size)  # a non-square region
    view = torch.randn(1, config.num_bands, gh, gw, generator=gen)
    boxes = torch.tensor([[0.0, 0.0, 1 / 3, 1 / 2], [2 / 3, 1 / 2, 1.0, 1.0]])[: patches.shape[0]]
    # no_grad, not inference_mode: the tracer cannot take inference tensors as inputs.
    with torch.no_grad():
        context = model.forward_global(view)
        keys = sorted(context)
        ref = model.predict_patches(patches, context, boxes).numpy()
    global_path = global_graph_path(path)
    g_partial, l_partial = Path(partial_path(global_path)), Path(partial_path(path))
    partials += [(g_partial, global_path), (l_partial, path)]
    ctx_names = [f"ctx_{k}" for k in keys]
    # Wrappers start in training mode, and the exporter restores each module's mode on exit.
    _export(
        _GlobalGraph(model, keys).eval(),
        (view,),
        g_partial,
        ["view"],
        ctx_names,
        {
            "view": {2: "gh", 3: "gw"},
            **{n: {i: f"{n}_{i}" for i in range(1, context[k].dim())} for n, k in zip(ctx_names, keys)},
        },
    )
    _export(
        _LocalGraph(model, keys).eval(),
        (patches, boxes, *[context[k] for k in keys]),
        l_partial,
        ["patches", "boxes", *ctx_names],
        ["logits"],
        {
            "patches": {0: "batch"},
            "boxes": {0: "batch"},
            "logits": {0: "batch"},
            **{n: {i: f"{n}_{i}" for i in range(1, context[k].dim())} for n, k in zip(ctx_names, keys)},
        },
    )
    g_session = sessions[str(g_partial)] = _session(g_partial)
    g_out = g_session.run(None, {"view": view.numpy()})
    local = sessions[str(l_partial)] = _session(l_partial)
    feeds = {"patches": patches.numpy(), "boxes": boxes.numpy(), **dict(zip(ctx_names, g_out))}
    # The exporter drops context inputs the current mode does not use.
    got = local.run(None, {i.name: feeds[i.name] for i in local.get_inputs()})[0]
    ctx_diff = max(float(np.abs(g - context[k].numpy()).max()) for g, k in zip(g_out, keys))
    return max(ctx_diff, float(np.abs(got - ref).max()))


def onnx_cache_dir() -> Path:
    """Where exported graphs are cached: ``RSINFER_CACHE``/onnx, else ~/.cache/rsinfer/onnx."""
    return cache_root() / "onnx"


def cached_onnx(model: nn.Module, config: ModelConfig, mode: str | None) -> tuple[Path, dict | None]:
    """The model's ONNX graph for ``config.tile``, exported on first use into the cache folder
    (with the CPU sessions that verified it, which a CPU backend reuses).

    The cache key covers the model, tile, mode and a digest of the weights, so a new
    checkpoint never reuses an old graph.
    """
    from .weights import state_dict_sha256

    cache = onnx_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ModelError(f"{cache}: cannot create the ONNX cache folder ({err.strerror}); set RSINFER_CACHE") from None
    # "-v2": graphs with dynamic spatial axes; caches of earlier versions are not reused.
    path = cache / f"{config.name}-{config.tile}-{mode or 'sliding'}-{state_dict_sha256(model)[:16]}-v2.onnx"
    if path.exists():
        log.debug("ONNX graph of %s from the cache: %s", config.name, path)
        return path, None
    log.info("exporting %s to ONNX (first use; cached in %s, set by RSINFER_CACHE)", config.name, cache)
    return path, export_onnx(model, config, config.tile, path).sessions
