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


def _five_band_seven_class_checkpoint(path):
    """simple-fcn trained elsewhere on 5 bands and 7 classes (LANet Potsdam's setting)."""
    from rsinfer.models import get_config

    config = get_config("simple-fcn").replace(
        in_bands=("r", "g", "b", "nir", "dsm"),
        mean=(0.0,) * 5,
        std=(1.0,) * 5,
        class_names=tuple("abcdefg"),
        class_colors=((0, 0, 0),) * 7,
    )
    torch.save({"state_dict": create_model("simple-fcn", config).state_dict()}, path)


def test_convert_weights_takes_bands_classes_and_settings(runner, tmp_path, monkeypatch):
    from rsinfer.loading import load_model

    _five_band_seven_class_checkpoint(tmp_path / "potsdam.pth")
    out = tmp_path / "potsdam.safetensors"
    args = ["convert-weights", str(tmp_path / "potsdam.pth"), str(out), "-m", "simple-fcn"]
    # the counts are read off the checkpoint; 5 bands need their normalization
    res = runner.invoke(main, args)
    assert res.exit_code != 0
    assert "inferred from the checkpoint's shapes: 7 classes" in res.output and "5 bands" in res.output
    assert "--set mean=" in res.output and not out.exists()
    names = "invalid,impervious,building,low_vegetation,tree,car,clutter"
    res = runner.invoke(
        main,
        args
        + ["--bands", "red,green,blue,nir,dsm", "--classes", names]
        + ["--set", "mean=85.8,91.7,84.9,96.6,47", "--set", "std=35.8,35.2,36.5,37,55", "--set", "tile=256"],
    )
    assert res.exit_code == 0, res.output
    entry = json.loads((tmp_path / "manifest.json").read_text())["weights"]["potsdam"]
    assert entry["config"]["in_bands"] == ["red", "green", "blue", "nir", "dsm"] and entry["config"]["tile"] == 256
    assert entry["config"]["mean"] == [85.8, 91.7, 84.9, 96.6, 47] and len(entry["config"]["class_colors"]) == 7
    monkeypatch.setenv("RSINFER_WEIGHTS_MANIFEST", str(tmp_path / "manifest.json"))
    loaded = load_model(weights="potsdam")
    assert loaded.config.num_bands == 5 and loaded.config.class_names[0] == "invalid" and loaded.config.tile == 256
    bad = runner.invoke(main, args + ["--overwrite", "--set", "colour=red"])
    assert bad.exit_code != 0 and "--set colour=red" in bad.output


def test_convert_weights_infers_classes_alone(runner, tmp_path):
    from rsinfer.models import get_config

    config = get_config("simple-fcn").replace(class_names=tuple("abcdefg"), class_colors=((0, 0, 0),) * 7)
    torch.save(create_model("simple-fcn", config).state_dict(), tmp_path / "seven.pt")
    out = tmp_path / "seven.safetensors"
    res = runner.invoke(main, ["convert-weights", str(tmp_path / "seven.pt"), str(out), "-m", "simple-fcn"])
    assert res.exit_code == 0, res.output
    assert "7 classes (named class0..class6" in res.output
    entry = json.loads((tmp_path / "manifest.json").read_text())["weights"]["seven"]
    assert entry["config"]["class_names"] == [f"class{i}" for i in range(7)] and "in_bands" not in entry["config"]


def test_load_model_sets_the_global_view_size():
    from rsinfer.loading import load_model

    loaded = load_model("glcanet-lite", "random", global_size=256)
    assert loaded.config.global_local.global_size == 256 and loaded.module.global_size == 256
    with pytest.raises(ModelError, match="global-local"):
        load_model("simple-fcn", "random", global_size=256)


def test_a_manifest_entry_sets_glnets_global_view_and_procedure(tmp_path, monkeypatch):
    from rsinfer.loading import load_model
    from rsinfer.weights import WeightEntry, save_manifest_entry, save_safetensors, sha256_of

    save_safetensors(create_model("glnet-lite").state_dict(), tmp_path / "g.safetensors")
    config = {"global_size": 508, "procedure": "streaming"}
    entry = WeightEntry("g", "g.safetensors", "glnet-lite", sha256_of(tmp_path / "g.safetensors"), config=config)
    save_manifest_entry(tmp_path / "manifest.json", entry)
    monkeypatch.setenv("RSINFER_WEIGHTS_MANIFEST", str(tmp_path / "manifest.json"))
    loaded = load_model(weights="g")
    assert loaded.config.global_local.global_size == 508 and loaded.config.global_local.procedure == "streaming"
    assert loaded.module.global_size == 508 and loaded.module.procedure == "streaming"
    assert load_model(weights="g", global_size=256).module.global_size == 256  # the caller's word wins
