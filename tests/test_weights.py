"""Checkpoints: safe loading, the authors' layouts, the manifest and convert-weights."""

import json
import pickle

import pytest
import torch

from rsinfer.cli.main import main
from rsinfer.errors import ModelError
from rsinfer.models import create_model
from rsinfer.weights import load_checkpoint, read_checkpoint, resolve_weights


def simple_state(seed=0):
    torch.manual_seed(seed)
    return create_model("simple-fcn").state_dict()


def test_safetensors_and_pth_load_the_same_weights(tmp_path):
    from safetensors.torch import save_file

    state = simple_state()
    save_file(state, tmp_path / "w.safetensors")
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, tmp_path / "w.pth")
    for f in ("w.safetensors", "w.pth"):
        model = create_model("simple-fcn")
        load_checkpoint("simple-fcn", model, tmp_path / f)
        for k, v in model.state_dict().items():
            assert torch.equal(v, state[k])


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_a_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"state_dict": _Exploit()}, f)
    with pytest.raises(ModelError, match="cannot load checkpoint safely"):
        read_checkpoint(tmp_path / "evil.pth")
    assert not (tmp_path / "pwned").exists()


def test_a_checkpoint_that_does_not_fit_lists_missing_unexpected_and_shapes(tmp_path):
    state = simple_state()
    del state["classifier.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["features.0.weight"] = torch.zeros(16, 4, 3, 3)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ModelError) as err:
        load_checkpoint("simple-fcn", create_model("simple-fcn"), tmp_path / "bad.pt")
    msg = str(err.value)
    assert "bad.pt" in msg and "1 missing: classifier.bias" in msg and "1 unexpected: extra.weight" in msg
    assert "features.0.weight (16, 4, 3, 3) vs (16, 3, 3, 3)" in msg and "\n" not in msg


def test_convert_weights_writes_safetensors_and_a_verified_manifest_entry(runner, tmp_path, make_raster, monkeypatch):
    torch.save({"state_dict": {"net." + k: v for k, v in simple_state(3).items()}}, tmp_path / "run.ckpt")
    out = tmp_path / "weights" / "simple-demo.safetensors"
    out.parent.mkdir()
    res = runner.invoke(
        main,
        [
            "convert-weights",
            str(tmp_path / "run.ckpt"),
            str(out),
            "--model",
            "simple-fcn",
            "--source",
            "test run",
            "--license",
            "MIT",
        ],
    )
    assert res.exit_code == 0, res.output
    manifest = json.loads((out.parent / "manifest.json").read_text())
    entry = manifest["weights"]["simple-demo"]
    assert entry["file"] == "simple-demo.safetensors" and entry["model"] == "simple-fcn" and len(entry["sha256"]) == 64

    # the entry is usable by name, and its checksum is enforced
    monkeypatch.setenv("RSINFER_WEIGHTS_MANIFEST", str(out.parent / "manifest.json"))
    path, found = resolve_weights("simple-demo")
    assert path == out and found.license == "MIT"
    src = make_raster(torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8).numpy())
    res = runner.invoke(main, ["segment", str(src), "-o", str(tmp_path / "l.tif"), "--weights", "simple-demo", "-q"])
    assert res.exit_code == 0, res.output
    out.write_bytes(out.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ModelError, match="fails its checksum"):
        resolve_weights("simple-demo")


def test_manifest_config_overrides_the_model_defaults(tmp_path, monkeypatch):
    from rsinfer.loading import load_model
    from rsinfer.weights import WeightEntry, save_manifest_entry, save_safetensors, sha256_of

    torch.manual_seed(0)
    from rsinfer.models import get_config

    cfg = get_config("simple-fcn").replace(class_names=("a", "b"), class_colors=((0, 0, 0), (9, 9, 9)))
    save_safetensors(create_model("simple-fcn", cfg).state_dict(), tmp_path / "two.safetensors")
    save_manifest_entry(
        tmp_path / "manifest.json",
        WeightEntry(
            name="two",
            file="two.safetensors",
            model="simple-fcn",
            sha256=sha256_of(tmp_path / "two.safetensors"),
            config={"class_names": ["a", "b"], "class_colors": [[0, 0, 0], [9, 9, 9]]},
        ),
    )
    monkeypatch.setenv("RSINFER_WEIGHTS_MANIFEST", str(tmp_path / "manifest.json"))
    loaded = load_model(weights="two")
    assert loaded.config.class_names == ("a", "b") and loaded.module.classifier.out_channels == 2
    assert loaded.weights == "two"
    with pytest.raises(ModelError, match="are for model simple-fcn, not lanet"):
        load_model("lanet", "two")
