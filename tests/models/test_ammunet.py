"""AMMUNet: shapes, attention math against a dense reference, identity mask, key map, windows."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from rsinfer.models import create_model, get_config
from rsinfer.models.ammunet import (
    AMMUNet,
    AttentionBlock,
    MergedAttention,
    ammunet_key_map,
)
from rsinfer.weights import load_checkpoint

torch.manual_seed(0)

PARAMS_512 = 30_430_718
FLOPS_512 = 108_634_570_752  # FlopCounterMode, 2 per multiply-add


@pytest.fixture(scope="module")
def model() -> AMMUNet:
    return create_model("ammunet")


class TinyEncoder(nn.Module):
    """Stand-in backbone: four maps at 1/4..1/32, so decoder-level tests stay cheap."""

    def __init__(self, in_channels: int = 3, channels: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, channels, 4, stride=4)
        self.downs = nn.ModuleList(nn.Conv2d(channels, channels, 2, stride=2) for _ in range(3))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(x)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        return feats


def tiny_ammunet(num_classes: int = 3) -> AMMUNet:
    return AMMUNet(
        num_classes=num_classes, channels=16, num_heads=2, backbone=TinyEncoder(), encoder_channels=(8, 8, 8, 8)
    ).eval()


# --- registry, shapes, sizes -------------------------------------------------------------


def test_config():
    cfg = get_config("ammunet")
    assert (cfg.tile, cfg.size_multiple, cfg.min_tile) == (512, 32, 32)
    assert cfg.receptive_radius is None and cfg.num_classes == 6 and cfg.num_bands == 3
    assert cfg.mean == (123.675, 116.28, 103.53) and cfg.std == (58.395, 57.12, 57.375)
    assert cfg.input_range == 255.0
    assert cfg.padded_size(500) == 512 and cfg.padded_size(10) == 32


@pytest.mark.parametrize("shape", [(2, 3, 64, 96), (1, 3, 128, 128), (1, 3, 96, 32)])
def test_output_shape(model, shape):
    with torch.no_grad():
        out = model(torch.randn(shape))
    assert out.shape == (shape[0], 6, *shape[2:])
    assert torch.isfinite(out).all()


def test_non_multiple_of_32_is_padded_by_the_caller(model):
    x = torch.randn(1, 3, 100, 70)
    with pytest.raises(ValueError, match="multiples of 32"):
        model(x)
    cfg = get_config("ammunet")
    ph, pw = cfg.padded_size(100) - 100, cfg.padded_size(70) - 70
    with torch.no_grad():
        out = model(F.pad(x, (0, pw, 0, ph)))[..., :100, :70]
    assert out.shape == (1, 6, 100, 70)


def test_bands_and_classes_follow_the_config():
    cfg = get_config(
        "ammunet",
        in_bands=("red", "green", "blue", "nir"),
        mean=(0.0,) * 4,
        std=(1.0,) * 4,
        class_names=("a", "b"),
        class_colors=((0, 0, 0), (255, 255, 255)),
    )
    net = create_model("ammunet", cfg)
    assert net.backbone.stem[0].in_channels == 4
    with torch.no_grad():
        assert net(torch.randn(1, 4, 64, 64)).shape == (1, 2, 64, 64)


def test_512_forward_params_and_flops(model):
    """The one 512² forward: shape, parameter count and FLOPs quoted in the docstring."""
    assert sum(p.numel() for p in model.parameters()) == PARAMS_512
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        out = model(torch.randn(1, 3, 512, 512))
    assert out.shape == (1, 6, 512, 512)
    assert counter.get_total_flops() == FLOPS_512


# --- attention math ----------------------------------------------------------------------


def hierarchy(base: int, levels: int, dim: int = 16, heads: int = 2) -> list[MergedAttention]:
    """Random-weight attention modules for levels 0..levels-1, in float64."""
    attns = [MergedAttention(dim, heads, base, level) for level in range(levels)]
    for a in attns:
        nn.init.normal_(a.relative_position_bias_table, std=1.0)
        nn.init.normal_(a.qkv.weight, std=0.5)
    return [a.double().eval() for a in attns]


def run_hierarchy(attns, xs):
    outs, maps = [], []
    for attn, x in zip(attns, xs):
        out, maps = attn(x, maps)
        outs.append(out)
    return outs, maps


def dense_reference(attns: list[MergedAttention], xs: list[torch.Tensor], base: int):
    """Eqs. 1-3, 7, 8 written densely, in raster order, one full N×N matrix per head.

    Level k's own attention is a softmax restricted to groups (the whole ``base``-sided
    window at level 0, 2×2 granular windows above, divided by the number of groups in a
    level-k window). Every coarser level i adds its own attention with the identity mask
    applied (diagonal zeroed), taken between the level-i ancestors of the two tokens
    (ancestor = coordinates shifted right by k - i) and spread over the 4^(k-i) finer
    tokens of the key's ancestor. Returns each level's output and merged matrix.
    """
    outs, mats, own = [], [], []
    for k, (attn, x) in enumerate(zip(attns, xs)):
        b, h, w, c = x.shape
        n, heads = h * w, attn.num_heads
        d = c // heads
        r = torch.arange(h).repeat_interleave(w)
        col = torch.arange(w).repeat(h)
        q, key, v = (
            F.linear(x.reshape(b, n, c), attn.qkv.weight, attn.qkv.bias).view(b, n, 3, heads, d).permute(2, 0, 3, 1, 4)
        )
        logits = q @ key.transpose(-2, -1) * d**-0.5
        side = base if k == 0 else 2
        same_group = ((r // side)[:, None] == (r // side)[None, :]) & ((col // side)[:, None] == (col // side)[None, :])
        dr = (r % side)[:, None] - (r % side)[None, :] + side - 1
        dc = (col % side)[:, None] - (col % side)[None, :] + side - 1
        bias = attn.relative_position_bias_table[dr * (2 * side - 1) + dc].permute(2, 0, 1)
        fine = (logits + bias).masked_fill(~same_group, float("-inf")).softmax(-1)
        if k > 0:
            fine = fine / ((base << k) ** 2 // 4)
        merged = fine.clone()
        for i in range(k):
            s = k - i
            ancestor = (r >> s) * (w >> s) + (col >> s)
            masked = own[i] * (1 - torch.eye(own[i].shape[-1], dtype=x.dtype))
            merged = merged + masked[:, :, ancestor][:, :, :, ancestor] / 4**s
        own.append(fine)
        mats.append(merged)
        out = (merged @ v).transpose(1, 2).reshape(b, n, c)
        outs.append(attn.proj(out).view(b, h, w, c))
    return outs, mats


@pytest.mark.parametrize("base, windows", [(2, (1, 1)), (2, (1, 2)), (4, (2, 1))])
def test_gmsa_ammm_equals_dense_merged_attention(base, windows):
    levels = 3
    attns = hierarchy(base, levels)
    xs = [
        torch.randn(2, (base << k) * windows[0], (base << k) * windows[1], 16, dtype=torch.float64)
        for k in range(levels)
    ]
    with torch.no_grad():
        ours, _ = run_hierarchy(attns, xs)
        dense, mats = dense_reference(attns, xs, base)
    for a, e in zip(ours, dense):
        torch.testing.assert_close(a, e)
    # The merged map is not row-stochastic: a level-1 row sums to 1/G + 1 - A0[a, a].
    g1 = (base << 1) ** 2 // 4
    a0_self = torch.diagonal(mats[0], dim1=-2, dim2=-1)
    r, c = torch.arange(xs[1].shape[1]), torch.arange(xs[1].shape[2])
    anc = ((r[:, None] >> 1) * (xs[1].shape[2] >> 1) + (c[None, :] >> 1)).reshape(-1)
    torch.testing.assert_close(mats[1].sum(-1), 1 / g1 + 1 - a0_self[:, :, anc])


def test_identity_mask_zeroes_exactly_the_diagonal():
    """Eq. 7: the maps handed down keep every entry but the diagonal of each group."""
    base = 4
    attns = hierarchy(base, 2)
    xs = [torch.randn(1, base << k, base << k, 16, dtype=torch.float64) for k in range(2)]
    with torch.no_grad():
        _, maps = run_hierarchy(attns, xs)
        _, mats = dense_reference(attns, xs, base)
    m0, m1 = maps
    assert m0.shape == (1, 2, 1, base**2, base**2)  # level 0: one group, the window
    assert m1.shape == (1, 2, base**2, 4, 4)  # level 1: one 2×2 group per level-0 token
    for m in (m0, m1):
        assert torch.all(torch.diagonal(m, dim1=-2, dim2=-1) == 0)
    off = ~torch.eye(base**2, dtype=torch.bool)
    torch.testing.assert_close(m0[..., off], mats[0][:, :, None][..., off])
    # Level 1: group g is level-0 token g (raster); its 4 tokens in raster order inside.
    side = 2 * base
    tokens = torch.tensor(
        [[(2 * (g // base) + i // 2) * side + 2 * (g % base) + i % 2 for i in range(4)] for g in range(base**2)]
    )
    own = mats[1][:, :, tokens[:, :, None], tokens[:, None, :]]  # same-group entries: fine only
    torch.testing.assert_close(m1, own * (1 - torch.eye(4, dtype=torch.float64)))
    assert torch.all(torch.diagonal(own, dim1=-2, dim2=-1) > 0)


def test_relative_position_index_matches_the_authors_recipe():
    """Their buffer: c[i·w + j] = i·(2w - 1) + j, index[a, b] = c[a] + c[n - 1 - b]."""
    for w in (2, 16):
        c = (torch.arange(w)[:, None] * (2 * w - 1) + torch.arange(w)[None, :]).reshape(-1)
        theirs = c[:, None] + c.flip(0)[None, :]
        attn = MergedAttention(16, 2, w, 0)
        assert torch.equal(attn.relative_position_index, theirs)


# --- windows at 1024 and odd sizes ---------------------------------------------------------


def test_1024_gives_four_independent_windows_per_level():
    """Level grids of a 1024² tile (32², 64², 128² tokens): 4 windows at every level,
    and a change in one 512-px quadrant stays inside that quadrant at all levels."""
    blocks = [AttentionBlock(16, 2, 16, k).eval() for k in range(3)]
    xs = [torch.randn(1, 16, 32 << k, 32 << k) for k in range(3)]

    def run(inputs):
        outs, maps = [], []
        for blk, x in zip(blocks, inputs):
            out, maps = blk(x, maps)
            outs.append(out)
        return outs, maps

    with torch.no_grad():
        base, maps = run(xs)
        assert [m.shape[0] for m in maps] == [4, 4, 4]
        bumped = [x.clone() for x in xs]
        bumped[0][..., :16, :16] += 1.0  # top-left quadrant of the 1/32 map only
        changed, _ = run(bumped)
    for k, (a, b) in enumerate(zip(base, changed)):
        q = 16 << k
        assert not torch.allclose(a[..., :q, :q], b[..., :q, :q])
        untouched = torch.ones_like(a, dtype=torch.bool)
        untouched[..., :q, :q] = False
        assert torch.equal(a[untouched], b[untouched])


def test_tiny_model_at_1024_and_at_a_padded_size():
    net = tiny_ammunet()
    with torch.no_grad():
        for side in (1024, 640):  # 640: every level padded to 2×2 windows
            assert net(torch.randn(1, 3, side, side)).shape == (1, 3, side, side)


# --- authors' checkpoint layout ------------------------------------------------------------


def authors_state_dict() -> dict[str, torch.Tensor]:
    """Every key of the authors' mmseg checkpoint, with its shape, filled with random values.

    Derived from their config and modules: mmseg ResNetV1c-50 (``backbone``), AMMUNetHead
    (``decode_head``: mmcv ConvModule ``conv``/``bn``, SwinBlock with ``attn.w_msa`` and
    mmcv FFN ``layers.0.0``/``layers.1``, PosBias tables + index buffers, the unused
    ``p0``/``fr`` and ``p*.weights``), and the FCNHead ``auxiliary_head``.
    """
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    def conv(prefix: str, cout: int, cin: int, k: int, bias: bool = False) -> None:
        shapes[f"{prefix}.weight"] = (cout, cin, k, k)
        if bias:
            shapes[f"{prefix}.bias"] = (cout,)

    def linear(prefix: str, cout: int, cin: int) -> None:
        shapes[f"{prefix}.weight"] = (cout, cin)
        shapes[f"{prefix}.bias"] = (cout,)

    for i, (cout, cin) in zip((0, 3, 6), ((32, 3), (32, 32), (64, 32))):
        conv(f"backbone.stem.{i}", cout, cin, 3)
        bn(f"backbone.stem.{i + 1}", cout)
    inplanes = 64
    for stage, (blocks, planes) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), 1):
        for j in range(blocks):
            p = f"backbone.layer{stage}.{j}"
            cin = inplanes if j == 0 else planes * 4
            conv(f"{p}.conv1", planes, cin, 1)
            bn(f"{p}.bn1", planes)
            conv(f"{p}.conv2", planes, planes, 3)
            bn(f"{p}.bn2", planes)
            conv(f"{p}.conv3", planes * 4, planes, 1)
            bn(f"{p}.bn3", planes * 4)
            if j == 0:
                conv(f"{p}.downsample.0", planes * 4, cin, 1)
                bn(f"{p}.downsample.1", planes * 4)
        inplanes = planes * 4

    h = "decode_head"
    shapes[f"{h}.pb4.relative_position_bias_table"] = (31 * 31, 8)
    shapes[f"{h}.pb4.relative_position_index_1"] = (256, 256)
    for pb in ("pb3", "pb2"):
        shapes[f"{h}.{pb}.relative_position_bias_table"] = (9, 8)
        shapes[f"{h}.{pb}.relative_position_index_2"] = (4, 4)
    conv(f"{h}.pre_conv.conv", 256, 2048, 1)
    bn(f"{h}.pre_conv.bn", 256)
    for blk in ("b4", "b3", "b2"):
        for norm in ("norm1", "norm2"):
            shapes[f"{h}.{blk}.{norm}.weight"] = shapes[f"{h}.{blk}.{norm}.bias"] = (256,)
        linear(f"{h}.{blk}.attn.w_msa.qkv", 768, 256)
        linear(f"{h}.{blk}.attn.w_msa.proj", 256, 256)
        linear(f"{h}.{blk}.ffn.layers.0.0", 1024, 256)
        linear(f"{h}.{blk}.ffn.layers.1", 256, 1024)
    for wf, cin in (("p3", 1024), ("p2", 512), ("p1", 256), ("p0", 3)):
        conv(f"{h}.{wf}.pre_conv.conv", 256, cin, 1, bias=True)
        shapes[f"{h}.{wf}.weights"] = (2,)
        conv(f"{h}.{wf}.post_conv.conv", 256, 512, 3)
        bn(f"{h}.{wf}.post_conv.bn", 256)
    shapes[f"{h}.fr.pa.0.weight"], shapes[f"{h}.fr.pa.0.bias"] = (256, 1, 3, 3), (256,)
    conv(f"{h}.fr.ca.1.conv", 16, 256, 1, bias=True)
    conv(f"{h}.fr.ca.3.conv", 256, 16, 1, bias=True)
    conv(f"{h}.fr.shortcut.conv", 256, 256, 1)
    bn(f"{h}.fr.shortcut.bn", 256)
    shapes[f"{h}.fr.proj.depthwise_conv.conv.weight"] = (256, 1, 3, 3)
    bn(f"{h}.fr.proj.depthwise_conv.bn", 256)
    conv(f"{h}.fr.proj.pointwise_conv.conv", 256, 256, 1, bias=True)
    conv(f"{h}.conv_seg", 6, 256, 1, bias=True)
    conv("auxiliary_head.convs.0.conv", 256, 1024, 3)
    bn("auxiliary_head.convs.0.bn", 256)
    conv("auxiliary_head.conv_seg", 6, 256, 1, bias=True)

    gen = torch.Generator().manual_seed(1)
    out = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(100)
        elif "relative_position_index" in key:
            out[key] = torch.randint(0, 9, shape, generator=gen)
        else:
            out[key] = torch.randn(shape, generator=gen)
    return out


def is_parameter(key: str) -> bool:
    return not any(s in key for s in ("running_", "num_batches", "relative_position_index"))


def test_authors_checkpoint_loads_strictly():
    theirs = authors_state_dict()
    # Table III comparison in the docstring: their full model and ours.
    n_theirs = sum(t.numel() for k, t in theirs.items() if is_parameter(k))
    n_aux = sum(t.numel() for k, t in theirs.items() if is_parameter(k) and k.startswith("auxiliary_head."))
    assert (n_theirs, n_theirs - n_aux) == (34_118_940, 31_757_590)

    mapped, dropped = {}, []
    for key, value in theirs.items():
        ours = ammunet_key_map(key)
        if ours is None:
            dropped.append(key)
        else:
            assert ours not in mapped, f"two keys map to {ours}"
            mapped[ours] = value
    assert all(
        k.startswith(("auxiliary_head.", "decode_head.p0.", "decode_head.fr.", "decode_head.pb"))
        or k.endswith(".weights")
        for k in dropped
    )
    assert sum(k.startswith("decode_head.pb") for k in dropped) == 3  # the index buffers
    assert sum(k.endswith(".weights") for k in dropped) == 4  # p0..p3

    net = AMMUNet()
    net.load_state_dict(mapped, strict=True)
    assert sum(p.numel() for p in net.parameters()) == PARAMS_512
    ours = net.state_dict()
    assert torch.equal(
        ours["decoder.b4.attn.relative_position_bias_table"], theirs["decode_head.pb4.relative_position_bias_table"]
    )
    assert torch.equal(
        ours["decoder.b2.attn.relative_position_bias_table"], theirs["decode_head.pb2.relative_position_bias_table"]
    )
    assert torch.equal(ours["decoder.b3.ffn.fc2.weight"], theirs["decode_head.b3.ffn.layers.1.weight"])
    assert torch.equal(ours["decoder.p2.pre_conv.bias"], theirs["decode_head.p2.pre_conv.conv.bias"])
    assert torch.equal(ours["backbone.stem.6.weight"], theirs["backbone.stem.6.weight"])
    # Our own keys map to themselves, so saved rsinfer checkpoints go through the same loader.
    assert all(ammunet_key_map(k) == k for k in ours)


# --- export ---------------------------------------------------------------------------------


def test_exports_to_onnx_with_dynamic_size(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    net = tiny_ammunet()
    path = tmp_path / "ammunet.onnx"
    torch.onnx.export(
        net,
        (torch.randn(1, 3, 64, 64),),
        str(path),
        dynamo=False,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}, "logits": {0: "b", 2: "h", 3: "w"}},
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 64, 64), (2, 3, 96, 160), (1, 3, 544, 512)]:
        x = torch.randn(shape)
        with torch.no_grad():
            expected = net(x).numpy()
        got = session.run(None, {"x": x.numpy()})[0]
        torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(expected), rtol=1e-4, atol=1e-4)


def test_ammunet_mmseg_checkpoint_loads_strictly_after_mapping(tmp_path):
    authors = authors_state_dict()
    assert any(k.startswith("auxiliary_head.") for k in authors) and any(".p0." in k for k in authors)
    torch.save({"meta": {"mmseg_version": "1.x"}, "state_dict": authors}, tmp_path / "ammunet_iter_80000.pth")
    model = create_model("ammunet")
    load_checkpoint("ammunet", model, tmp_path / "ammunet_iter_80000.pth")
    own = model.state_dict()
    assert torch.equal(own["backbone.stem.0.weight"], authors["backbone.stem.0.weight"])
    assert torch.equal(own["decoder.conv_seg.weight"], authors["decode_head.conv_seg.weight"])
