"""Train the bundled demo weights: the ``-lite`` models on ``rsinfer synth`` scenes.

    python scripts/train_demo_weights.py                      # all demo models, seed 0
    python scripts/train_demo_weights.py --models lanet-lite --steps 300 --out /tmp/w

Reproducible: the scenes are a pure function of their seeds, and every random draw here
(initial weights, crops, flips) comes from ``--seed``; on one machine and thread count the
same command writes the same files. Each model's weights go to ``OUT/<model>.synthetic.safetensors``
(floats stored as float16 to keep the repository small; they load into float32 models)
and an entry into ``OUT/manifest.json``, marked as the model's default weights.

The weights know synthetic scenes only: they are for demonstrations and tests, not for
real imagery.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from rasterio.enums import Resampling

from rsinfer.backends.base import input_affine
from rsinfer.evaluation import confusion_metrics
from rsinfer.io.source import default_value_scale
from rsinfer.models import create_model, get_config
from rsinfer.models.global_local import GlobalLocalModel
from rsinfer.synth import write_synthetic_scene
from rsinfer.weights import WeightEntry, save_manifest_entry, save_safetensors, sha256_of

DEMO_MODELS = ("lanet-lite", "ammunet-lite", "hiresnet-lite", "glcanet-lite", "glnet-lite")
TRAIN_SEEDS = (1001, 1002, 1003, 1004)  # scenes; the held-out scenes use other seeds
VALIDATION_SEED = 2001
SCENE_SIZE = 4096
CROP = 256
# Steps per model at batch 8 (global-local: 4 patches per region), sized for a 2-core CPU.
DEFAULT_STEPS = {"lanet-lite": 800, "ammunet-lite": 800, "hiresnet-lite": 800, "glcanet-lite": 1000, "glnet-lite": 800}
PEAK_LR = 2e-3
# The global-local path (FPNs without normalization, attention on their output) diverges
# at the peak rate above: a lower one and clipped gradients keep it stable.
PEAK_LR_OF = {"glcanet-lite": 1e-3, "glnet-lite": 1e-3}
GRAD_CLIP_OF = {"glcanet-lite": 1.0, "glnet-lite": 1.0}
# Builder arguments for training only. GLNet trains with its streaming procedure, where every
# patch's logits are a differentiable function of that patch and the global view alone (the
# authors' procedure fuses all patches of a region first). The manifest entry records it, so
# the weights run as they learnt: with the authors' procedure they score about 2 points lower
# on the held-out scene (tiled mIoU 79.1 % against 81.2 %).
TRAIN_KWARGS = {"glnet-lite": {"procedure": "streaming"}}
DISCLAIMER = "Trained on synthetic rsinfer synth scenes only, for demonstrations and tests; not for real imagery."


@dataclass
class Scene:
    image: np.ndarray  # (3, H, W) uint8
    labels: np.ndarray  # (H, W) uint8
    # The whole scene decimated as the pipeline reads global views, at several scales:
    # (view, view labels) per entry of VIEW_SCALES.
    views: list[tuple[np.ndarray, np.ndarray]]


# Global views of global-local models: a region of R px is read down to 500 px, so the
# view's scale is 500 / R. Training covers regions from 4096 px (the pipeline's region,
# scale 0.12) down to about 500 px (small rasters are one region), so the global branch
# knows every scale the pipeline can show it.
VIEW_SCALES = (500 / 4096, 500 / 2048, 500 / 1024, 500 / 512)


def make_scene(folder: Path, seed: int, size: int, with_views: bool = True) -> Scene:
    image_path, label_path = folder / f"scene-{seed}-{size}.tif", folder / f"scene-{seed}-{size}_labels.tif"
    if not label_path.exists():
        write_synthetic_scene(str(image_path), str(label_path), size, size, seed=seed)
    views = []
    with rasterio.open(image_path) as src, rasterio.open(label_path) as lab:
        for scale in VIEW_SCALES if with_views else ():
            side = min(size, round(size * scale))
            views.append(
                (
                    src.read(out_shape=(3, side, side), resampling=Resampling.bilinear),
                    lab.read(1, out_shape=(side, side), resampling=Resampling.nearest),
                )
            )
        return Scene(src.read(), lab.read(1), views)


class Normalizer:
    """The pipeline's normalization of uint8 input (the backends' own coefficients)."""

    def __init__(self, config):
        self.a, self.b = input_affine(config, default_value_scale("uint8", config.input_range))

    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(batch)).float() * self.a + self.b


def dihedral(array: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations of the last two axes (aerial images have no up)."""
    if k & 4:
        array = np.swapaxes(array, -1, -2)
    if k & 2:
        array = array[..., ::-1, :]
    if k & 1:
        array = array[..., ::-1]
    return array


def dihedral_box(box: tuple[float, float, float, float], k: int) -> tuple[float, float, float, float]:
    y0, x0, y1, x1 = box
    if k & 4:
        y0, x0, y1, x1 = x0, y0, x1, y1
    if k & 2:
        y0, y1 = 1 - y1, 1 - y0
    if k & 1:
        x0, x1 = 1 - x1, 1 - x0
    return y0, x0, y1, x1


def sample_crops(scenes: list[Scene], rng: np.random.Generator, batch: int, crop: int):
    images, labels = [], []
    for _ in range(batch):
        s = scenes[rng.integers(len(scenes))]
        y, x = rng.integers(0, s.labels.shape[0] - crop + 1), rng.integers(0, s.labels.shape[1] - crop + 1)
        k = int(rng.integers(8))
        images.append(dihedral(s.image[:, y : y + crop, x : x + crop], k))
        labels.append(dihedral(s.labels[y : y + crop, x : x + crop], k))
    return np.stack(images), np.stack(labels)


def sample_region(scenes: list[Scene], rng: np.random.Generator, patches: int, crop: int):
    """A region of a scene (its global view, at one of VIEW_SCALES) and patches inside it with their boxes."""
    s = scenes[rng.integers(len(scenes))]
    scene_view, scene_view_labels = s.views[rng.integers(len(s.views))]
    vside = scene_view.shape[-1]
    factor = s.labels.shape[0] / vside  # full-resolution pixels per view pixel
    # A region's view is at most 500 px (the pipeline's global_size), at least 60 % of that.
    vs = int(rng.integers(min(vside, 300), min(vside, 500) + 1))
    vy, vx = rng.integers(0, vside - vs + 1), rng.integers(0, vside - vs + 1)
    k = int(rng.integers(8))
    view = dihedral(scene_view[:, vy : vy + vs, vx : vx + vs], k)
    view_labels = dihedral(scene_view_labels[vy : vy + vs, vx : vx + vs], k)
    r0y, r0x, rsize = vy * factor, vx * factor, vs * factor
    images, labels, boxes = [], [], []
    for _ in range(patches):
        y = int(rng.integers(math.ceil(r0y), int(r0y + rsize) - crop + 1))
        x = int(rng.integers(math.ceil(r0x), int(r0x + rsize) - crop + 1))
        images.append(dihedral(s.image[:, y : y + crop, x : x + crop], k))
        labels.append(dihedral(s.labels[y : y + crop, x : x + crop], k))
        box = ((y - r0y) / rsize, (x - r0x) / rsize, (y + crop - r0y) / rsize, (x + crop - r0x) / rsize)
        boxes.append(dihedral_box(box, k))
    return view[None], view_labels[None], np.stack(images), np.stack(labels), np.array(boxes, dtype=np.float32)


def class_weights(scenes: list[Scene], num_classes: int) -> torch.Tensor:
    """Inverse square-root frequency, mean 1: rare classes (cars, clutter) count more."""
    counts = sum(np.bincount(s.labels.ravel(), minlength=num_classes)[:num_classes] for s in scenes)
    w = 1 / np.sqrt(np.maximum(counts, 1) / counts.sum())
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def labels_tensor(labels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(labels)).long()


def train_step(model, norm, scenes, rng, weights, batch: int) -> torch.Tensor:
    if isinstance(model, GlobalLocalModel):
        # All three modes learn: the global branch on its view, the local branch with and
        # without the global context (--mode global-local / patch).
        view, view_labels, images, labels, boxes = sample_region(scenes, rng, batch // 2, CROP)
        context = model.forward_global(norm(view))
        global_logits = F.interpolate(
            model.forward_global_logits(context), size=view.shape[-2:], mode="bilinear", align_corners=False
        )
        x, target = norm(images), labels_tensor(labels)
        local = model.forward_local(x, context, torch.from_numpy(boxes))
        return (
            F.cross_entropy(local, target, weight=weights)
            + F.cross_entropy(model.forward_patch(x), target, weight=weights)
            + 0.5 * F.cross_entropy(global_logits, labels_tensor(view_labels), weight=weights)
        )
    images, labels = sample_crops(scenes, rng, batch, CROP)
    return F.cross_entropy(model(norm(images)), labels_tensor(labels), weight=weights)


@torch.inference_mode()
def validate(model, norm, scene: Scene, num_classes: int, side: int = 1024) -> float:
    """mIoU of whole-image inference on a corner of the validation scene (progress only)."""
    model.eval()
    multiple = 32
    image = scene.image[:, : side - side % multiple, : side - side % multiple]
    pred = model(norm(image[None])).argmax(1)[0].numpy()
    model.train()
    truth = scene.labels[: pred.shape[0], : pred.shape[1]]
    cm = np.bincount(truth.ravel().astype(np.int64) * num_classes + pred.ravel(), minlength=num_classes**2)
    return confusion_metrics(cm.reshape(num_classes, num_classes))["miou"]


def train(name: str, scenes: list[Scene], validation: Scene, steps: int, seed: int, batch: int, log) -> torch.nn.Module:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    config = get_config(name)
    model = create_model(name, **TRAIN_KWARGS.get(name, {})).train()
    norm = Normalizer(config)
    weights = class_weights(scenes, config.num_classes)
    peak = PEAK_LR_OF.get(name, PEAK_LR)
    clip = GRAD_CLIP_OF.get(name)
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peak, total_steps=steps, pct_start=0.1)
    start, running = time.time(), None
    for step in range(1, steps + 1):
        loss = train_step(model, norm, scenes, rng, weights, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        schedule.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if step % 100 == 0 or step == steps:
            miou = (
                validate(model, norm, validation, config.num_classes)
                if step % 500 == 0 or step == steps
                else float("nan")
            )
            log(f"{name} step {step}/{steps} loss {running:.3f} val mIoU {miou:.3f} ({time.time() - start:.0f} s)")
    return model.eval()


def save(model, name: str, out: Path, seed: int, steps: int) -> WeightEntry:
    file = out / f"{name}.synthetic.safetensors"
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    # One metadata key: safetensors writes several keys in no fixed order, which would make
    # the file (and its sha256) differ between identical runs.
    about = {"model": name, "seed": seed, "steps": steps, "note": DISCLAIMER}
    save_safetensors(state, file, metadata={"rsinfer": json.dumps(about, sort_keys=True)})
    entry = WeightEntry(
        name=f"{name}.synthetic",
        file=file.name,
        model=name,
        sha256=sha256_of(file),
        config=dict(TRAIN_KWARGS.get(name, {})),
        default=True,
        source=f"scripts/train_demo_weights.py --models {name} --seed {seed} --steps {steps}",
        license="MIT",
        description=DISCLAIMER,
    )
    save_manifest_entry(out / "manifest.json", entry)
    return entry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEMO_MODELS))
    parser.add_argument("--steps", type=int, default=None, help="Steps per model [per-model defaults].")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "weights")
    parser.add_argument(
        "--data", type=Path, default=Path("bench-data/train"), help="Where the training scenes are cached."
    )
    parser.add_argument("--scene-size", type=int, default=SCENE_SIZE)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.data.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    global_local = any(get_config(name).is_global_local for name in args.models)
    scenes = [make_scene(args.data, s, args.scene_size, with_views=global_local) for s in TRAIN_SEEDS]
    validation = make_scene(args.data, VALIDATION_SEED, 1024, with_views=False)
    for name in args.models:
        steps = args.steps or DEFAULT_STEPS.get(name, 1000)
        model = train(name, scenes, validation, steps, args.seed, args.batch, log)
        entry = save(model, name, args.out, args.seed, steps)
        log(json.dumps({"model": name, "file": entry.file, "sha256": entry.sha256}))


if __name__ == "__main__":
    main()
