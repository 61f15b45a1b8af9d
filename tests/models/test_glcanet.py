"""GLCANet: the footprint mask, what a patch may read of the global view, modes, batching, ONNX."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from rsinfer.models.config import GlobalLocalSpec
from rsinfer.models.glcanet import GLCANET, GLCANet, footprint_mask
from rsinfer.models.glnet import LEVELS
from rsinfer.models.registry import create_model, get_config

SMALL = dict(global_size=64, encoder_layers=(1, 1, 1, 1), fpn_width=32, smooth_width=16)
MODES = ("global-local", "global", "patch")


def loud(model: torch.nn.Module) -> torch.nn.Module:
    """Re-draw every conv/linear outside the encoders with std 1/sqrt(fan_in): O(1) logits."""
    for name, m in model.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and "encoder" not in name:
            torch.nn.init.normal_(m.weight, std=m.weight[0].numel() ** -0.5)
    return model


def small_glcanet(seed: int, **kwargs) -> GLCANet:
    torch.manual_seed(seed)
    return loud(GLCANet(**{**SMALL, **kwargs})).eval()


def mask_by_loops(box, grid, n):
    """The documented rule, token by token: cell [i, i+1) x [j, j+1) overlaps the grown box."""
    y0, x0, y1, x1 = box
    gh, gw = grid
    out = np.zeros((gh, gw), dtype=bool)
    for i, j in itertools.product(range(gh), range(gw)):
        out[i, j] = (i + 1 > y0 * gh - n and i < y1 * gh + n) and (j + 1 > x0 * gw - n and j < x1 * gw + n)
    return out


@pytest.mark.parametrize("n", [0.0, 0.5, 1.0, 2.0])
def test_footprint_mask_follows_the_documented_rule(n):
    grid = (6, 10)  # a non-square token grid
    boxes = [(0.0, 0.0, 0.5, 0.3), (0.5, 0.55, 1.0, 1.0), (1 / 3, 0.42, 0.55, 0.61), (0.9, 0.9, 1.1, 1.2)]
    mask = footprint_mask(torch.tensor(boxes), grid, n).reshape(len(boxes), *grid).numpy()
    for b, box in enumerate(boxes):
        np.testing.assert_array_equal(mask[b], mask_by_loops(box, grid, n), err_msg=f"box {box}, n {n}")
    if n == 0:  # exactly the cells the box overlaps; a box edge on a cell edge does not take the next cell
        assert mask[0, :3, :3].all() and not mask[0, 3:].any() and not mask[0, :, 3:].any()


@pytest.fixture(scope="module")
def scene():
    """A small GLCANet, a 256² global view (8 x 8 tokens) and its context."""
    model = small_glcanet(0, global_size=256)
    with torch.inference_mode():
        ctx = model.forward_global(torch.rand(1, 3, 256, 256))
    assert ctx["tokens"].shape[-2:] == (8, 8)
    return model, ctx


# footprints in token units: rows 2..4, cols 3..5 and rows 5..8, cols 0..2
BOXES = torch.tensor([[0.25, 0.375, 0.5, 0.625], [0.625, 0.0, 1.0, 0.25]])


def test_attention_weights_are_zero_outside_footprint_and_neighbourhood(scene):
    model, ctx = scene
    with torch.inference_mode():
        w = model.attention_weights(torch.rand(2, 3, 64, 64), ctx, BOXES)
    assert w.shape == (2, 1, 4, 64)  # (boxes, heads, local tokens of a 64-px patch, global tokens)
    for b in range(2):
        allowed = torch.from_numpy(mask_by_loops(BOXES[b].tolist(), (8, 8), model.neighbourhood)).flatten()
        assert 0 < allowed.sum() < 64
        assert (w[b][..., ~allowed] == 0).all()  # exactly zero
        assert (w[b][..., allowed] > 0).all()
        torch.testing.assert_close(w[b].sum(-1), torch.ones(1, 4))


def perturb_token(ctx: dict[str, torch.Tensor], i: int, j: int, tokens_only: bool = False) -> dict[str, torch.Tensor]:
    """Change global token (i, j): the token, and unless ``tokens_only`` every global map over its cell."""
    out = {}
    for key, m in ctx.items():
        m = m.clone()
        if key == "tokens" or not tokens_only:
            s = m.shape[-1] // 8  # cells of this map per token (the 256² view divides evenly)
            m[..., i * s : (i + 1) * s, j * s : (j + 1) * s] += 3.0 * torch.randn_like(
                m[..., i * s : (i + 1) * s, j * s : (j + 1) * s]
            )
        out[key] = m
    return out


def test_a_patch_reads_nothing_of_the_global_view_outside_its_neighbourhood(scene):
    model, ctx = scene
    patch, box = torch.rand(1, 3, 64, 64), BOXES[:1]  # rows 2..4, cols 3..5; n = 1: rows 1..4, cols 2..5
    with torch.inference_mode():
        base = model.predict_patches(patch, ctx, box)
        for i, j in [(0, 0), (0, 3), (5, 3), (3, 6), (7, 7), (3, 1)]:  # outside
            assert torch.equal(model.predict_patches(patch, perturb_token(ctx, i, j), box), base), (i, j)
        for i, j in [(1, 2), (4, 5), (2, 3), (1, 4)]:  # the footprint's ring and inside
            assert not torch.allclose(model.predict_patches(patch, perturb_token(ctx, i, j), box), base, atol=1e-4), (
                i,
                j,
            )
            # through the cross-attention alone as well
            changed = model.predict_patches(patch, perturb_token(ctx, i, j, tokens_only=True), box)
            assert not torch.allclose(changed, base, atol=1e-4), (i, j)


def test_neighbourhood_comes_from_the_config():
    config = GLCANET.replace(global_local=GlobalLocalSpec(global_size=500, region=4096, neighbourhood=2.0))
    torch.manual_seed(0)
    model = loud(
        create_model("glcanet", config, **{k: v for k, v in SMALL.items() if k != "global_size"}, global_size=256)
    )
    assert model.neighbourhood == 2.0
    assert create_model("glcanet", config, neighbourhood=0.5, encoder_layers=(1, 1, 1, 1)).neighbourhood == 0.5
    with torch.inference_mode():
        ctx = model.forward_global(torch.rand(1, 3, 256, 256))
        patch, box = torch.rand(1, 3, 64, 64), BOXES[:1]
        base = model.predict_patches(patch, ctx, box)
        # row 0 is two tokens above the footprint: visible with n = 2, beyond the crops' reach,
        # so only the cross-attention can carry the change
        assert not torch.allclose(
            model.predict_patches(patch, perturb_token(ctx, 0, 3, tokens_only=True), box), base, atol=1e-4
        )
        assert torch.equal(model.predict_patches(patch, perturb_token(ctx, 7, 3), box), base)


@pytest.mark.parametrize("mode", MODES)
def test_batched_and_one_by_one_patches_agree(mode):
    model = small_glcanet(1).set_mode(mode)
    patches = torch.rand(3, 3, 64, 64)
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.25, 0.5, 0.75, 1.0], [0.1, 0.2, 0.9, 0.95]])
    with torch.inference_mode():
        ctx = model.forward_global(torch.rand(1, 3, 48, 64))
        batched = model.predict_patches(patches, ctx, boxes)
        single = torch.cat([model.predict_patches(patches[i : i + 1], ctx, boxes[i : i + 1]) for i in range(3)])
    assert batched.abs().max() > 0.1
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", MODES)
def test_forward_shapes_in_each_mode_non_square(mode):
    model = small_glcanet(2).set_mode(mode)
    with torch.inference_mode():
        out = model(torch.rand(2, 3, 64, 96))
        assert out.shape == (2, 6, 64, 96) and torch.isfinite(out).all()
        ctx = model.forward_global(torch.rand(1, 3, 40, 64))
        out = model.predict_patches(
            torch.rand(2, 3, 64, 80),
            None if mode == "patch" else ctx,
            torch.tensor([[0.0, 0.0, 0.8, 0.5], [0.2, 0.5, 1.0, 1.0]]),
        )
        assert out.shape == (2, 6, 64, 80)


def test_global_crops_and_queries_line_up_with_their_patches():
    """Coordinates encoded in a non-square view's maps come back at each local cell's centre."""
    model = small_glcanet(3)
    with torch.inference_mode():
        ctx = dict(model.forward_global(torch.rand(1, 3, 48, 80)))  # tokens 2 x 3 (p5 of 48 x 80)
    for key in [f"level{n}" for n in LEVELS] + ["tokens"]:
        m = ctx[key].clone()
        h, w = m.shape[-2:]
        m[0, 0] = ((torch.arange(h) + 0.5) / h)[:, None].expand(h, w)
        m[0, 1] = ((torch.arange(w) + 0.5) / w)[None, :].expand(h, w)
        ctx[key] = m
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.4], [0.5, 0.6, 1.0, 1.0], [0.55, 0.7, 1.1, 1.08]])  # edges, padded
    seen = {}
    hook = model.global_from_local.register_forward_pre_hook(lambda mod, args: seen.__setitem__("q", args[0]))
    laterals = model.local_fpn.laterals
    model.local_fpn.laterals = lambda feats, crops: seen.__setitem__("crops", crops) or laterals(feats, crops)
    try:
        with torch.inference_mode():
            model.forward_local(torch.rand(3, 3, 64, 72), ctx, boxes)
    finally:
        hook.remove()
        del model.local_fpn.laterals

    def check(got, grid):  # got: (B, C, h, w) with coordinates in channels 0/1
        h, w = got.shape[-2:]
        for b, (y0, x0, y1, x1) in enumerate(boxes.tolist()):
            ys = (y0 + (y1 - y0) * (torch.arange(h) + 0.5) / h).clamp(0.5 / grid[0], 1 - 0.5 / grid[0])
            xs = (x0 + (x1 - x0) * (torch.arange(w) + 0.5) / w).clamp(0.5 / grid[1], 1 - 0.5 / grid[1])
            torch.testing.assert_close(got[b, 0], ys[:, None].expand(h, w), atol=1e-5, rtol=0)
            torch.testing.assert_close(got[b, 1], xs[None, :].expand(h, w), atol=1e-5, rtol=0)

    for k, n in enumerate(LEVELS):
        check(seen["crops"][k][0], ctx[f"level{n}"].shape[-2:])
    q = seen["q"]  # global queries of the G<-L attention: tokens sampled at the local token grid (2 x 3)
    check(q.transpose(1, 2).reshape(3, -1, 2, 3), ctx["tokens"].shape[-2:])


class PredictPatches(torch.nn.Module):
    """``predict_patches`` with the context as plain tensor inputs (what an ONNX graph takes)."""

    def __init__(self, model: GLCANet, keys: list[str]):
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, patches, boxes, *context):
        return self.model.predict_patches(patches, dict(zip(self.keys, context)), boxes)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_onnx_export_of_global_local_patches_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = small_glcanet(4).set_mode("global-local")
    with torch.inference_mode():
        ctx = model.forward_global(torch.rand(1, 3, 48, 64))
    keys = [f"level{n}" for n in LEVELS] + ["tokens", "ps3"]
    context = [ctx[k].clone() for k in keys]
    patches = torch.rand(2, 3, 64, 64)
    boxes = torch.tensor([[0.0, 0.0, 0.6, 0.5], [0.4, 0.45, 1.0, 0.95]])
    wrapper = PredictPatches(model, keys).eval()
    path = tmp_path / "glcanet_patches.onnx"
    with torch.no_grad():
        expected = wrapper(patches, boxes, *context)
        torch.onnx.export(
            wrapper,
            (patches, boxes, *context),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["patches", "boxes", *keys],
            output_names=["logits"],
            dynamic_axes={"patches": {0: "batch"}, "boxes": {0: "batch"}, "logits": {0: "batch"}},
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"patches": patches.numpy(), "boxes": boxes.numpy(), **{k: c.numpy() for k, c in zip(keys, context)}}
    feeds = {i.name: feeds[i.name] for i in session.get_inputs()}
    (got,) = session.run(None, feeds)
    assert expected.abs().max() > 0.1
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4, rtol=0)
    # the mask comes from the boxes inside the graph: other boxes give other logits, still matching torch
    boxes2 = torch.tensor([[0.5, 0.0, 1.0, 0.4], [0.0, 0.6, 0.5, 1.0]])
    with torch.no_grad():
        expected2 = wrapper(patches, boxes2, *context)
    (got2,) = session.run(None, {**feeds, "boxes": boxes2.numpy()})
    np.testing.assert_allclose(got2, expected2.numpy(), atol=1e-4, rtol=0)
    # and the batch size is free
    patches3, boxes3 = torch.rand(3, 3, 64, 64), torch.cat([boxes, boxes2[:1]])
    with torch.no_grad():
        expected3 = wrapper(patches3, boxes3, *context)
    (got3,) = session.run(None, {**feeds, "patches": patches3.numpy(), "boxes": boxes3.numpy()})
    np.testing.assert_allclose(got3, expected3.numpy(), atol=1e-4, rtol=0)


def test_registered_config():
    c = get_config("glcanet")
    assert (c.tile, c.overlap, c.num_classes) == (500, 50, 6)
    assert c.mean == (0.0, 0.0, 0.0) and c.std == (1.0, 1.0, 1.0) and c.input_range == 1.0
    assert c.global_local == GlobalLocalSpec(global_size=500, region=4096, neighbourhood=1.0)
    assert c.receptive_radius is None and c.tile % c.size_multiple == 0
