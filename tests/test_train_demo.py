"""The demo-weight training script is reproducible from its seed and writes loadable weights."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from rsinfer.models import create_model
from rsinfer.weights import load_checkpoint, resolve_weights

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_demo_weights.py"


@pytest.fixture(scope="module")
def train_script():
    spec = importlib.util.spec_from_file_location("train_demo_weights", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tmp_path_factory.mktemp("scenes")


def run(script, data, out, seed):
    script.main(
        [
            "--models",
            "lanet-lite",
            "--steps",
            "2",
            "--batch",
            "2",
            "--scene-size",
            "512",
            "--seed",
            str(seed),
            "--data",
            str(data),
            "--out",
            str(out),
        ]
    )
    return json.loads((out / "manifest.json").read_text())["weights"]["lanet-lite.synthetic"]


@pytest.mark.slow
def test_same_seed_same_weights_and_the_entry_loads(train_script, data, tmp_path):
    first = run(train_script, data, tmp_path / "a", seed=3)
    again = run(train_script, data, tmp_path / "b", seed=3)
    other = run(train_script, data, tmp_path / "c", seed=4)
    assert first["sha256"] == again["sha256"]
    assert other["sha256"] != first["sha256"]
    assert first["default"] is True and first["model"] == "lanet-lite"
    assert "--seed 3" in first["source"] and "not for real imagery" in first["description"]
    file, entry = resolve_weights("lanet-lite.synthetic", tmp_path / "a" / "manifest.json")
    load_checkpoint("lanet-lite", create_model("lanet-lite"), file)


def test_dihedral_boxes_follow_the_image(train_script):
    import numpy as np

    image = np.zeros((1, 8, 8))
    image[0, 1:3, 4:7] = 1  # a patch at rows 1-3, cols 4-7 of an 8-px view
    box = (1 / 8, 4 / 8, 3 / 8, 7 / 8)
    for k in range(8):
        moved = train_script.dihedral(image, k)[0]
        rows, cols = np.nonzero(moved)
        expected = (rows.min() / 8, cols.min() / 8, (rows.max() + 1) / 8, (cols.max() + 1) / 8)
        assert np.allclose(train_script.dihedral_box(box, k), expected), k


@pytest.mark.parametrize("name", ["lanet-lite", "glcanet-lite", "glnet-lite"])
def test_training_inputs_are_normalized_exactly_as_the_pipeline_does(train_script, name):
    import numpy as np
    import torch

    from rsinfer.backends import TorchBackend
    from rsinfer.io.source import default_value_scale
    from rsinfer.models import get_config

    config = get_config(name)  # lanet: 0-255 statistics; glcanet: 0-1 input
    data = np.random.default_rng(0).integers(0, 256, (2, 3, 16, 16), dtype=np.uint8)
    backend = TorchBackend(
        create_model(name), config, torch.device("cpu"), value_scale=default_value_scale("uint8", config.input_range)
    )
    assert torch.equal(train_script.Normalizer(config)(data), backend.normalize(data, np.ones((2, 16, 16), bool)))
