"""Packaging: every subpackage ships, and models/ installs as rsinfer.models (never a bare `models`)."""

from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_for_installation():
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed, dirs = set(tool["packages"]), tool["package-dir"]
    assert dirs["rsinfer.models"] == "models" and dirs["rsinfer.weights_data"] == "weights"
    assert "models" not in listed
    on_disk = {
        "rsinfer." + ".".join(p.parent.relative_to(REPO / "rsinfer").parts)
        for p in (REPO / "rsinfer").rglob("__init__.py")
        if p.parent != REPO / "rsinfer"
    }
    assert on_disk <= listed, f"not installed: {sorted(on_disk - listed)}"


def test_models_import_as_rsinfer_models():
    import rsinfer.models

    assert Path(rsinfer.models.__file__).parent == REPO / "models"
