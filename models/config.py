"""Model configuration: everything the pipeline needs to know about a model, as data.

The CLI reads its defaults (tile, overlap, bands, normalization, classes) from here;
nothing else in rsinfer hard-codes them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

ISPRS_CLASSES = (
    "impervious_surfaces",
    "building",
    "low_vegetation",
    "tree",
    "car",
    "clutter",
)
# The ISPRS Vaihingen/Potsdam legend colours, in class order.
ISPRS_COLORS = (
    (255, 255, 255),
    (0, 0, 255),
    (0, 255, 255),
    (0, 255, 0),
    (255, 255, 0),
    (255, 0, 0),
)
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class GlobalLocalSpec:
    """How a dual-branch global-local model (GLNet, GLCANet) sees the scene.

    ``region``: scene pixels a side given one global view (a raster no larger than one
    region gets a single view of the whole scene, as in the papers); ``global_size``: the
    longest side of that view after downsampling; ``neighbourhood``: GLCANet's cross-attention
    window around a patch, in patch sides (GLNet has no such window and ignores it);
    ``procedure``: how GLNet runs its patches, ``authors`` (their evaluation: cell crops, one
    local→global fusion per region over all its patches) or ``streaming`` (grid-sampled crops,
    the fusion per patch); None for models with one way (docs/models/glnet.md, "Inference").
    """

    global_size: int = 500
    region: int = 4096
    neighbourhood: float = 1.0
    procedure: str | None = None

    def __post_init__(self) -> None:
        if self.global_size < 1 or self.region < 1 or self.neighbourhood <= 0:
            raise ValueError("global_size, region and neighbourhood must be positive")
        if self.procedure not in (None, "authors", "streaming"):
            raise ValueError(f"unknown procedure {self.procedure!r}; choose authors or streaming")


# Fields of GlobalLocalSpec that ModelConfig.replace accepts as its own (manifest overrides).
GLOBAL_LOCAL_FIELDS = tuple(f.name for f in fields(GlobalLocalSpec))


@dataclass(frozen=True)
class ModelConfig:
    """What a registered model takes and gives.

    Inputs are normalized as ``(x * value_scale - mean) / std`` per band, where
    ``value_scale`` maps the raster's data type onto ``input_range`` (see
    :meth:`value_scale_for`).
    """

    name: str
    description: str = ""
    tile: int = 512
    overlap: int = 64
    in_bands: tuple[str, ...] = ("red", "green", "blue")
    mean: tuple[float, ...] = IMAGENET_MEAN_255
    std: tuple[float, ...] = IMAGENET_STD_255
    # The value range the normalization statistics are expressed in: 255 for 0-255 data, 1 for 0-1.
    input_range: float = 255.0
    class_names: tuple[str, ...] = ISPRS_CLASSES
    class_colors: tuple[tuple[int, int, int], ...] = ISPRS_COLORS
    # Tiles are padded up to a multiple of this before the forward pass, then cropped back.
    size_multiple: int = 1
    # Smallest tile side the network accepts (after padding).
    min_tile: int = 1
    # Pixels of context each output pixel depends on, each side; None when unbounded (attention, global pooling).
    receptive_radius: int | None = None
    paper: str = ""
    # Where the architecture's facts come from (the authors' repository, the paper).
    source: str = ""
    # A lighter variant made for the bundled synthetic-scene weights, not from the paper.
    demo: bool = False
    # Set for dual-branch global-local models; None for sliding-window models.
    global_local: GlobalLocalSpec | None = None

    def __post_init__(self) -> None:
        n = len(self.in_bands)
        if len(self.mean) != n or len(self.std) != n:
            raise ValueError(f"{self.name}: mean/std need {n} values, one per input band")
        if len(self.class_colors) != len(self.class_names):
            raise ValueError(f"{self.name}: one colour per class is needed")
        if not 0 <= self.overlap < self.tile:
            raise ValueError(f"{self.name}: overlap must be in [0, tile)")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_global_local(self) -> bool:
        return self.global_local is not None

    @property
    def num_bands(self) -> int:
        return len(self.in_bands)

    def replace(self, **changes) -> ModelConfig:
        """A copy with ``changes``; a :class:`GlobalLocalSpec` field (``global_size``, ``region``,
        ``neighbourhood``, ``procedure``) changes the spec of a global-local model."""
        spec_changes = {k: changes.pop(k) for k in GLOBAL_LOCAL_FIELDS if k in changes}
        if spec_changes:
            spec = changes.get("global_local", self.global_local)
            if spec is None:
                raise ValueError(f"{self.name}: {', '.join(spec_changes)} apply to global-local models only")
            changes["global_local"] = replace(spec, **spec_changes)
        return replace(self, **changes)

    def check_tile(self, tile: int) -> None:
        """Raise ValueError when the network cannot take tiles of this side."""
        if tile < self.min_tile:
            raise ValueError(f"model {self.name} needs tiles of at least {self.min_tile} px, got {tile}")

    def padded_size(self, size: int) -> int:
        m = self.size_multiple
        return max(self.min_tile, -(-size // m) * m)
