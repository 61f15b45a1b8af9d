"""GLNet: the authors' checkpoint layout, crop alignment, the windowed l2g pass, modes, batching."""

from __future__ import annotations

import pytest
import torch

from rsinfer.models.config import ISPRS_CLASSES
from rsinfer.models.glnet import (
    GLNET,
    LEVELS,
    GLNet,
    convert_glnet_state_dict,
    glnet_key_map,
    merge_glnet_checkpoints,
    resize,
)
from rsinfer.models.global_local import global_view_size
from rsinfer.models.registry import create_model, get_config
from rsinfer.weights import adapt_state_dict, load_into

# A narrow, shallow GLNet: the same graph, cheap enough for CPU tests.
SMALL = dict(global_size=64, encoder_layers=(1, 1, 1, 1), fpn_width=32, smooth_width=16)
MODES = ("global-local", "global", "patch")

BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
Layout = list[tuple[str, tuple[int, ...]]]


def _bn(prefix: str, c: int) -> Layout:
    return [(f"{prefix}.{s}", () if s == "num_batches_tracked" else (c,)) for s in BN_SUFFIXES]


def _conv(prefix: str, cout: int, cin: int, k: int, bias: bool = True) -> Layout:
    return [(f"{prefix}.weight", (cout, cin, k, k))] + ([(f"{prefix}.bias", (cout,))] if bias else [])


def author_resnet50(prefix: str) -> Layout:
    """models/resnet.py: torchvision ResNet-50 without fc (conv1, bn1, layer1-4, downsample on block 0)."""
    keys = _conv(f"{prefix}.conv1", 64, 3, 7, bias=False) + _bn(f"{prefix}.bn1", 64)
    inplanes = 64
    for stage, (blocks, planes) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), 1):
        for b in range(blocks):
            p = f"{prefix}.layer{stage}.{b}"
            keys += (
                _conv(f"{p}.conv1", planes, inplanes, 1, False)
                + _bn(f"{p}.bn1", planes)
                + _conv(f"{p}.conv2", planes, planes, 3, False)
                + _bn(f"{p}.bn2", planes)
                + _conv(f"{p}.conv3", planes * 4, planes, 1, False)
                + _bn(f"{p}.bn3", planes * 4)
            )
            if b == 0:
                keys += _conv(f"{p}.downsample.0", planes * 4, inplanes, 1, False) + _bn(
                    f"{p}.downsample.1", planes * 4
                )
            inplanes = planes * 4
    return keys


def author_glnet_layout(n_class: int) -> Layout:
    """(key, shape) of the authors' ``nn.DataParallel(fpn(n_class)).state_dict()``.

    From models/fpn_global_local_fmreg_ensemble.py: ``fpn_module_global`` = toplayer
    (2048→256, 1×1), latlayer1-3 (1024/512/256→256, 1×1), smooth{1-4}_1 (3×3 256→256),
    smooth{1-4}_2 (3×3 256→128), classify (3×3 512→C), and the ``_ext`` twins with doubled
    inputs plus ``smooth`` (3×3 1024→512); ``fpn_module_local`` (fold=2) = the same layers
    with doubled inputs, ``smooth`` (1024→512) and classify; ``ensemble_conv`` 3×3 1024→C.
    All FPN convs have biases.
    """
    keys = author_resnet50("resnet_global") + author_resnet50("resnet_local")
    enc = (2048, 1024, 512, 256)
    for branch, fold in (("fpn_global", 1), ("fpn_local", 2)):
        keys += _conv(f"{branch}.toplayer", 256, enc[0] * fold, 1)
        keys += sum((_conv(f"{branch}.latlayer{i}", 256, enc[i] * fold, 1) for i in (1, 2, 3)), [])
        keys += sum((_conv(f"{branch}.smooth{i}_1", 256, 256 * fold, 3) for i in (1, 2, 3, 4)), [])
        keys += sum((_conv(f"{branch}.smooth{i}_2", 128, 256 * fold, 3) for i in (1, 2, 3, 4)), [])
        if branch == "fpn_local":
            keys += _conv(f"{branch}.smooth", 512, 1024, 3)
        keys += _conv(f"{branch}.classify", n_class, 512, 3)
        if branch == "fpn_global":
            keys += _conv("fpn_global.toplayer_ext", 256, 4096, 1)
            keys += sum((_conv(f"fpn_global.latlayer{i}_ext", 256, enc[i] * 2, 1) for i in (1, 2, 3)), [])
            keys += sum((_conv(f"fpn_global.smooth{i}_1_ext", 256, 512, 3) for i in (1, 2, 3, 4)), [])
            keys += sum((_conv(f"fpn_global.smooth{i}_2_ext", 128, 512, 3) for i in (1, 2, 3, 4)), [])
            keys += _conv("fpn_global.smooth", 512, 1024, 3)
    keys += _conv("ensemble_conv", n_class, 1024, 3)
    return [("module." + k, s) for k, s in keys]


def author_state(n_class: int) -> dict[str, torch.Tensor]:
    """A fake authors' checkpoint: tensor i is filled with the value i (so we can see where it lands)."""
    return {
        k: (torch.tensor(i) if s == () else torch.full(s, float(i)))
        for i, (k, s) in enumerate(author_glnet_layout(n_class))
    }


def deepglobe_config():
    names = tuple(f"class{i}" for i in range(7))
    return GLNET.replace(class_names=names, class_colors=((0, 0, 0),) * 7)


# --- checkpoint layout ---------------------------------------------------------------------------


def test_authors_checkpoint_loads_strictly_and_lands_where_it_should():
    state = author_state(7)
    model = create_model("glnet", deepglobe_config())
    mapped = adapt_state_dict("glnet", model, state)
    load_into(model, mapped, "authors' fpn_deepglobe_local2global.pth (fake)")
    ours = model.state_dict()
    assert len(ours) == len(state)
    for key, value in state.items():
        torch.testing.assert_close(ours[glnet_key_map(key)], value.to(ours[glnet_key_map(key)].dtype))
    # a few names spelled out
    assert glnet_key_map("module.fpn_global.smooth.weight") == "global_fpn.l2g_fuse.weight"
    assert glnet_key_map("module.fpn_local.smooth.bias") == "local_fpn.fuse.bias"
    assert glnet_key_map("module.fpn_global.smooth3_2_ext.weight") == "global_fpn.l2g_smooth_b.2.weight"
    assert glnet_key_map("module.fpn_local.latlayer2.weight") == "local_fpn.lateral.2.weight"
    assert glnet_key_map("module.fpn_global.toplayer_ext.bias") == "global_fpn.l2g_lateral.0.bias"
    assert glnet_key_map("module.resnet_local.layer3.5.bn2.running_var") == "local_encoder.layer3.5.bn2.running_var"


def test_key_map_keeps_our_keys_and_rejects_unknown_ones():
    model = GLNet(**SMALL)
    for key in model.state_dict():
        assert glnet_key_map(key) == key
    for bad in ("module.fpn_local.toplayer_ext.weight", "module.mse.weight", "module.fpn_global.smooth5_1.weight"):
        with pytest.raises(KeyError):
            glnet_key_map(bad)


def test_two_author_checkpoints_fill_the_frozen_global_branch():
    l2g, glob = author_state(7), {k: v + 1000 for k, v in author_state(7).items()}
    merged = merge_glnet_checkpoints(l2g, glob)
    with torch.device("meta"):
        model = GLNet(num_classes=7, frozen_global=True)
    model.load_state_dict(merged, strict=True, assign=True)
    assert torch.equal(model.frozen_encoder.conv1.weight, glob["module.resnet_global.conv1.weight"])
    assert torch.equal(model.global_encoder.conv1.weight, l2g["module.resnet_global.conv1.weight"])
    assert torch.equal(model.frozen_fpn.classify.bias, glob["module.fpn_global.classify.bias"])
    assert convert_glnet_state_dict(l2g).keys() < merged.keys()


# --- forward passes ------------------------------------------------------------------------------


def loud(model: torch.nn.Module) -> torch.nn.Module:
    """Re-draw every conv outside the encoders with std 1/sqrt(fan_in), so logits are O(1).

    (The authors' N(0, 0.01) init makes random-weight logits tiny, which would make
    absolute tolerances toothless.)
    """
    for name, m in model.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and "encoder" not in name:
            torch.nn.init.normal_(m.weight, std=m.weight[0].numel() ** -0.5)
    return model


def small_glnet(seed: int, **kwargs) -> GLNet:
    torch.manual_seed(seed)
    return loud(GLNet(**{**SMALL, **kwargs})).eval()


@pytest.fixture(scope="module")
def small():
    return small_glnet(0)


@pytest.mark.parametrize("mode", MODES)
def test_forward_shapes_in_each_mode_non_square(small, mode):
    small.set_mode(mode)
    try:
        with torch.inference_mode():
            out = small(torch.rand(2, 3, 64, 96))
            assert out.shape == (2, 6, 64, 96) and torch.isfinite(out).all()
            # patches of a non-square region (global view 40 x 64)
            ctx = small.forward_global(torch.rand(1, 3, 40, 64))
            boxes = torch.tensor([[0.0, 0.0, 0.8, 0.5], [0.2, 0.5, 1.0, 1.0]])
            patches = torch.rand(2, 3, 64, 80)
            if small.needs_region_pass(ctx):
                small.fuse_region(ctx, [(patches, boxes)], (80, 128))
            out = small.predict_patches(patches, None if mode == "patch" else ctx, boxes)
            assert out.shape == (2, 6, 64, 80)
    finally:
        small.set_mode("global-local")


@pytest.mark.parametrize("procedure", ["authors", "streaming"])
@pytest.mark.parametrize("l2g", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_batched_and_one_by_one_patches_agree(mode, l2g, procedure):
    model = small_glnet(1, l2g=l2g, procedure=procedure).set_mode(mode)
    patches = torch.rand(4, 3, 64, 64)
    # three same-size footprints and one of another size (the l2g pass groups them by window)
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.25, 0.5, 0.75, 1.0], [0.5, 0.0, 1.0, 0.5], [0.1, 0.2, 0.9, 0.95]])
    with torch.inference_mode():
        ctx = model.forward_global(torch.rand(1, 3, 48, 64))
        if model.needs_region_pass(ctx):
            model.fuse_region(ctx, [(patches, boxes)], (128, 128))
        batched = model.predict_patches(patches, ctx, boxes)
        single = torch.cat([model.predict_patches(patches[i : i + 1], ctx, boxes[i : i + 1]) for i in range(4)])
    assert batched.abs().max() > 0.1
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)


def coordinate_context(ctx: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Channels 0/1 of every level map = the y/x view coordinate of the cell centre."""
    out = dict(ctx)
    for n in LEVELS:
        m = ctx[f"level{n}"].clone()
        h, w = m.shape[-2:]
        m[0, 0] = ((torch.arange(h) + 0.5) / h)[:, None].expand(h, w)
        m[0, 1] = ((torch.arange(w) + 0.5) / w)[None, :].expand(h, w)
        out[f"level{n}"] = m
    return out


def expected_coords(box, size, grid):
    """Where crop cell centres fall in the view, clamped to the outermost global cell centres (border)."""
    (y0, x0, y1, x1), (h, w), (gh, gw) = box.tolist(), size, grid
    ys = (y0 + (y1 - y0) * (torch.arange(h) + 0.5) / h).clamp(0.5 / gh, 1 - 0.5 / gh)
    xs = (x0 + (x1 - x0) * (torch.arange(w) + 0.5) / w).clamp(0.5 / gw, 1 - 0.5 / gw)
    return ys[:, None].expand(h, w), xs[None, :].expand(h, w)


def test_global_crops_and_l2g_windows_line_up_with_their_patches():
    """The streaming procedure: a view that is not square, patches at its edges and one padded past its edge."""
    small = small_glnet(0, procedure="streaming")
    with torch.inference_mode():
        ctx = coordinate_context(small.forward_global(torch.rand(1, 3, 48, 80)))  # level2 12x20 ... level5 2x3
    boxes = torch.tensor(
        [
            [0.0, 0.0, 0.5, 0.4],  # top-left corner, cells align at 1/4 (6 x 8)
            [0.5, 0.6, 1.0, 1.0],  # bottom-right corner
            [0.55, 0.7, 1.1, 1.08],
        ]
    )  # padded: reaches past the view
    patches = torch.rand(3, 3, 64, 72)
    seen = {}
    hook = small.local_fpn.register_forward_pre_hook(lambda mod, args: seen.__setitem__("crops", args[1]))
    forward_l2g = small.global_fpn.forward_l2g
    small.global_fpn.forward_l2g = lambda feats, ext: (
        seen.setdefault("windows", []).append(feats) or forward_l2g(feats, ext)
    )
    try:
        with torch.inference_mode():
            small.forward_local(patches, ctx, boxes)
    finally:
        hook.remove()
        del small.global_fpn.forward_l2g
    for k, n in enumerate(LEVELS):
        grid = ctx[f"level{n}"].shape[-2:]
        crop = seen["crops"][k][0]  # the c_k crop joining local level k
        for b in range(3):
            ey, ex = expected_coords(boxes[b], crop.shape[-2:], grid)
            torch.testing.assert_close(crop[b, 0], ey, atol=1e-5, rtol=0)
            torch.testing.assert_close(crop[b, 1], ex, atol=1e-5, rtol=0)
    # l2g windows, one batch per footprint size (boxes 0 and 1 share one): the global grid's cells over the footprint
    windows = seen["windows"]
    assert len(windows) == 2
    assert windows[0][3].shape[-2:] == (6, 8)  # level2 of box 0: exactly the 6 x 8 cells it covers
    torch.testing.assert_close(windows[0][3][0, 0, :, 0], (torch.arange(6) + 0.5) / 12, atol=1e-6, rtol=0)
    torch.testing.assert_close(windows[0][3][0, 1, 0, :], (torch.arange(8) + 0.5) / 20, atol=1e-6, rtol=0)
    for group, members in zip(windows, ([0, 1], [2])):
        for k, n in enumerate(LEVELS):
            grid = ctx[f"level{n}"].shape[-2:]
            for j, b in enumerate(members):
                ey, ex = expected_coords(boxes[b], group[k].shape[-2:], grid)
                torch.testing.assert_close(group[k][j, 0], ey, atol=1e-5, rtol=0)
                torch.testing.assert_close(group[k][j, 1], ex, atol=1e-5, rtol=0)


def authors_two_pass(model: GLNet, x: torch.Tensor) -> torch.Tensor:
    """The authors' mode-3 evaluation for an image that is one patch, written from helper.py.

    Crops: the whole global map (top = left = 0, h = H), bilinearly resized to the local map.
    Merge: each local map resized onto the whole global grid, divided by the count (1).
    Then the ``_ext`` pass on the whole global view, the crop of its ps3 resized to the
    local ps3, ``ensemble_conv``, and the model's upsampling to the patch (the authors': nearest).
    (Several patches: tests/models/test_glnet_authors.py.)
    """
    gh, gw = global_view_size(*x.shape[-2:], model.global_size)
    view = torch.nn.functional.interpolate(x, size=(gh, gw), mode="bilinear", align_corners=False, antialias=True)
    ctx = model.forward_global(view)
    feats = model.local_encoder(x)[::-1]
    crops = [
        [resize(m, f.shape[-2:]) for m in torch.split(ctx[f"level{n}"], list(ch), 1)]
        for n, f, ch in zip(LEVELS, feats, model.channels)
    ]
    ps0, ps1, ps2, ps3 = model.local_fpn(feats, crops)
    global_c = [torch.split(ctx[f"level{n}"], list(ch), 1)[0] for n, ch in zip(LEVELS, model.channels)]
    count = 1.0
    merged = [[resize(f, g.shape[-2:]) / count for f, g in zip(level, global_c)] for level in (feats, ps0, ps1, ps2)]
    ps3_g = model.global_fpn.forward_l2g(global_c, merged)
    logits = model.ensemble_conv(torch.cat((ps3, resize(ps3_g, ps3.shape[-2:])), 1))
    if model.upsample == "nearest":
        return torch.nn.functional.interpolate(logits, size=x.shape[-2:], mode="nearest")
    return resize(logits, x.shape[-2:])


@pytest.mark.parametrize("procedure", ["authors", "streaming"])
def test_whole_image_l2g_equals_the_authors_two_pass_procedure(procedure):
    model = small_glnet(2, procedure=procedure)
    assert model.upsample == ("nearest" if procedure == "authors" else "bilinear")
    x = torch.rand(1, 3, 64, 96)
    with torch.inference_mode():
        ours, ref = model(x), authors_two_pass(model, x)
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_frozen_global_branch_gives_the_context_and_own_encoder_the_l2g_pass():
    model = small_glnet(3, frozen_global=True)
    view = torch.rand(1, 3, 32, 48)
    with torch.inference_mode():
        ctx = model.forward_global(view)
        frozen_c5 = model.frozen_encoder(view)[3]
        own_c5 = model.global_encoder(view)[3]
        torch.testing.assert_close(ctx["level5"][:, :2048], frozen_c5)
        torch.testing.assert_close(ctx["l2g_c5"], own_c5)
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 6, 64, 64)


def test_registered_config():
    c = get_config("glnet")
    assert (c.tile, c.overlap, c.num_classes, c.in_bands) == (500, 50, 6, ("red", "green", "blue"))
    assert c.class_names == ISPRS_CLASSES
    assert c.mean == (0.0, 0.0, 0.0) and c.std == (1.0, 1.0, 1.0) and c.input_range == 1.0
    assert c.global_local is not None and c.global_local.global_size == 500 and c.global_local.region == 4096
    assert c.receptive_radius is None and c.tile % c.size_multiple == 0
    assert create_model("glnet", **{k: v for k, v in SMALL.items() if k != "global_size"}).global_size == 500


class PredictPatches(torch.nn.Module):
    def __init__(self, model: GLNet, keys: list[str]):
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, patches, boxes, *context):
        return self.model.predict_patches(patches, dict(zip(self.keys, context)), boxes)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_onnx_export_g2l_works_and_l2g_refuses_clearly(tmp_path):
    """Streaming G→L exports; the streaming l2g pass and the authors' crops size tensors from box values."""
    ort = pytest.importorskip("onnxruntime")
    patches, boxes = torch.rand(2, 3, 64, 64), torch.tensor([[0.0, 0.0, 0.6, 0.5], [0.4, 0.45, 1.0, 0.95]])
    with torch.no_grad():
        authors = small_glnet(5, l2g=False)
        ctx = authors.forward_global(torch.rand(1, 3, 48, 64))
        keys = sorted(k for k in ctx if k != "logits")
        with pytest.raises(RuntimeError, match="procedure='streaming' and l2g=False"):
            args = (patches, boxes, *[ctx[k] for k in keys])
            torch.onnx.export(PredictPatches(authors, keys).eval(), args, str(tmp_path / "a.onnx"), dynamo=False)
    for l2g in (True, False):
        model = small_glnet(5, l2g=l2g, procedure="streaming")
        with torch.no_grad():
            ctx = model.forward_global(torch.rand(1, 3, 48, 64))
            keys = sorted(k for k in ctx if k != "logits")  # global-local mode does not read the logits
            wrapper = PredictPatches(model, keys).eval()
            args = (patches, boxes, *[ctx[k] for k in keys])
            path = tmp_path / f"glnet_{l2g}.onnx"
            if l2g:  # the windows are sized from box values: a traced graph would freeze them
                with pytest.raises(RuntimeError, match="l2g=False"):
                    torch.onnx.export(wrapper, args, str(path), dynamo=False, opset_version=17)
                continue
            torch.onnx.export(
                wrapper, args, str(path), dynamo=False, opset_version=17, input_names=["patches", "boxes", *keys]
            )
            expected = wrapper(*args)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = dict(zip(["patches", "boxes", *keys], (a.numpy() for a in args)))
        (got,) = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})
        assert expected.abs().max() > 0.1
        torch.testing.assert_close(torch.from_numpy(got), expected, atol=1e-4, rtol=0)


def test_deepglobe_checkpoint_shapes_give_its_seven_classes():
    """convert-weights reads 7 classes off the authors' DeepGlobe layout (meta tensors: shapes only)."""
    from rsinfer.weights import infer_shapes

    state = {k: torch.empty(s, device="meta") for k, s in author_glnet_layout(7)}
    assert infer_shapes("glnet", get_config("glnet"), state) == {"classes": 7}
    assert infer_shapes("glnet", deepglobe_config(), state) == {}
