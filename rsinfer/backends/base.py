"""The interface every backend implements, the steps they share, and device selection."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from rsinfer.models import ModelConfig

from ..errors import RsinferError
from ..stitch import class_labels


def resolve_device(spec: str) -> torch.device:
    """``auto`` picks the first CUDA device when there is one, else the CPU."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise RsinferError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RsinferError(f"device {spec} asked for, but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RsinferError(f"device {spec} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type != "cpu":
        raise RsinferError(f"unsupported device {spec!r}; use auto, cpu, cuda or cuda:N")
    return device


def input_affine(config: ModelConfig, value_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's normalization folded into ``x * a + b`` (each (1, bands, 1, 1), float32).

    ``(x * value_scale - mean) / std == x * a + b``; training code uses the same, so that
    weights see at inference exactly the inputs they were trained on.
    """
    mean = torch.tensor(config.mean, dtype=torch.float32)
    std = torch.tensor(config.std, dtype=torch.float32)
    return (value_scale / std).view(1, -1, 1, 1), (-mean / std).view(1, -1, 1, 1)


@contextlib.contextmanager
def host_threads(device: torch.device) -> Iterator[None]:
    """Torch's host-side work around the model (normalizing, labels, stitching) on one thread.

    On the CPU these are short element-wise passes, run while reader and writer threads
    decode and compress on the same cores: torch's intra-op pool, sized for the model,
    then spends more time waking and spinning than working. The model keeps its threads;
    element-wise results do not depend on the thread count.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _Staging:
    """Host → CUDA copies through reused pinned buffers, on a stream of their own.

    ``pin_memory()`` per batch allocates and registers page-locked memory each time; here
    each array shape gets two pinned buffers used in turn, and a buffer is refilled only
    once its previous copy has finished (its event). The copy runs on a side stream, so it
    overlaps the model still running on the compute stream; the compute stream waits for
    the copy before it uses the tensor, and the allocator is told the tensor is used there.
    """

    SLOTS = 2

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device)
        self.buffers: dict[tuple, list[tuple[torch.Tensor, torch.cuda.Event]]] = {}
        self.turn: dict[tuple, int] = {}

    def to_device(self, t: torch.Tensor) -> torch.Tensor:
        key = (tuple(t.shape), t.dtype)
        slots = self.buffers.get(key)
        if slots is None:
            if len(self.buffers) >= 8:  # shapes come and go (last batch, regions): keep few
                self.buffers.clear()
                self.turn.clear()
            slots = self.buffers[key] = [
                (torch.empty(t.shape, dtype=t.dtype, pin_memory=True), torch.cuda.Event()) for _ in range(self.SLOTS)
            ]
        i = self.turn.get(key, 0)
        self.turn[key] = (i + 1) % self.SLOTS
        buffer, done = slots[i]
        done.synchronize()  # the previous copy out of this buffer has finished
        buffer.copy_(t)
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.stream):
            out = buffer.to(self.device, non_blocking=True)
            done.record(self.stream)
        compute.wait_stream(self.stream)
        out.record_stream(compute)
        return out


class Backend(ABC):
    """Runs a model on batches of raw tiles.

    :meth:`predict` takes ``data`` (B, bands, h, w) in the raster's own dtype and ``valid``
    (B, h, w) bool and returns class probabilities (B, K, h, w) as a torch tensor on
    :attr:`device`. Normalization, padding to the model's size rule, cropping back and the
    softmax are shared here, on the device; subclasses only turn a normalized, padded batch
    into logits. Global-local models also get, per tile, the context of its region
    (:meth:`compute_context` of a global view) and its footprint box.
    """

    def __init__(
        self, config: ModelConfig, device: torch.device, value_scale: float = 1.0, activation: str = "softmax"
    ):
        self.config = config
        self.device = device
        self.activation = activation
        self.calls = 0  # forward passes run
        self.tiles = 0  # tiles sent through the model
        a, b = input_affine(config, value_scale)
        self._a, self._b = a.to(device), b.to(device)
        self._staging: _Staging | None = None  # CUDA: pinned host buffers and the copy stream

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(array))
        if self.device.type != "cuda":
            return t
        if self._staging is None:
            self._staging = _Staging(self.device)
        return self._staging.to_device(t)

    def normalize(self, data: np.ndarray, valid: np.ndarray) -> torch.Tensor:
        """``(data * value_scale - mean) / std`` as float32 on the device, invalid pixels 0."""
        # One float buffer, normalized in place: the raw batch (shared with numpy on the CPU)
        # is never written, and the arithmetic is the same as out of place, bit for bit. The
        # product of the raw pixels and the float32 scale is that buffer (type promotion: no
        # separate conversion pass), except for float64 pixels, converted first.
        raw = self._to_device(data)
        if raw.dtype == torch.float64:
            raw = raw.to(torch.float32)
        x = torch.mul(raw, self._a)
        x.add_(self._b)
        # Invalid pixels become the band mean (zero after normalization), so nodata
        # collars do not look like black objects to the model. Where every pixel is valid
        # (most tiles) the product would change nothing (x * 1.0 == x, sign included).
        if valid.all():
            return x
        return x.mul_(self._to_device(valid).unsqueeze(1))

    def padded_shape(self, h: int, w: int) -> tuple[int, int]:
        """The (H, W) a tile of (h, w) is padded to before the model: the model's size rule."""
        return self.config.padded_size(h), self.config.padded_size(w)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Pad bottom/right (replicating edges) to :meth:`padded_shape`."""
        h, w = x.shape[-2:]
        H, W = self.padded_shape(h, w)
        ph, pw = H - h, W - w
        return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x

    def normalize_padded(self, data: np.ndarray, valid: np.ndarray) -> torch.Tensor:
        """``pad(normalize(data, valid))`` in one float buffer: the raw pixels and the mask are
        edge-padded (normalizing commutes with repeating a pixel), then normalized once."""
        h, w = data.shape[-2:]
        H, W = self.padded_shape(h, w)
        ph, pw = H - h, W - w
        if ph or pw:
            data = np.pad(data, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="edge")
            valid = np.pad(valid, ((0, 0), (0, ph), (0, pw)), mode="edge")
        return self.normalize(data, valid)

    @staticmethod
    def runs_of_same_context(contexts: list):
        """(start, stop) of consecutive tiles sharing one region's context."""
        start = 0
        for i in range(1, len(contexts) + 1):
            if i == len(contexts) or contexts[i] is not contexts[start]:
                yield start, i
                start = i

    @torch.inference_mode()
    def predict(
        self,
        data: np.ndarray,
        valid: np.ndarray,
        contexts: list | None = None,
        boxes: np.ndarray | None = None,
        labels: bool = False,
    ) -> torch.Tensor:
        """Class probabilities (B, K, h, w) float32; with ``labels``, class labels (B, h, w) uint8.

        Labels are the argmax of the logits: the softmax is monotonic, so it is skipped when
        nothing needs probabilities, and only one byte per pixel leaves the device.
        """
        h, w = data.shape[-2:]
        with host_threads(self.device):
            x = self.normalize_padded(data, valid)
        logits = self.logits(x, contexts, boxes)[..., :h, :w]
        self.calls += 1
        self.tiles += data.shape[0]
        with host_threads(self.device):
            if labels:
                return class_labels(logits, 1)
            logits = logits.float()
            return logits.softmax(1) if self.activation == "softmax" else logits

    @abstractmethod
    def logits(self, x: torch.Tensor, contexts: list | None, boxes: np.ndarray | None) -> torch.Tensor:
        """Logits (B, K, H, W) of a normalized, padded batch on :attr:`device`."""

    def compute_context(self, view):
        """Global context of a global view (global-local models)."""
        raise NotImplementedError(f"{type(self).__name__} has no global branch")
