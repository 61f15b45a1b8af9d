"""Interrupted jobs resume to identical bytes: SIGKILL at random points, SIGTERM, and what --resume refuses."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rsinfer.cli.main import main
from rsinfer.partial import store_path

SEGMENT = [
    "--model",
    "lanet-lite",
    "--tile",
    "128",
    "--overlap",
    "32",
    "--batch-size",
    "1",
    "--workers",
    "1",
    "--device",
    "cpu",
    "--probs",
]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 1400-row scene: 11 chunk rows of 128 rows at tile 128."""
    from rsinfer.synth import write_synthetic_scene

    path = tmp_path_factory.mktemp("scene") / "s.tif"
    write_synthetic_scene(path, path.with_name("s_labels.tif"), 600, 1400, seed=5)
    return path


@pytest.fixture(scope="module")
def clean(scene, tmp_path_factory):
    """The uninterrupted run's outputs, by format."""
    from click.testing import CliRunner

    folder = tmp_path_factory.mktemp("clean")
    outs = {}
    for fmt in ("tif", "zarr"):
        outs[fmt] = folder / f"clean.{fmt}"
        res = CliRunner().invoke(main, ["segment", str(scene), "-o", str(outs[fmt]), *SEGMENT, "-q"])
        assert res.exit_code == 0, res.output
    return outs


def completed_rows(store: str) -> int:
    try:
        meta = json.loads((Path(store) / ".zattrs").read_text())["rsinfer"]  # zarr v2 group attributes
    except (OSError, ValueError, KeyError):
        return 0
    done = meta.get("completed_rows") or [[0, 0]]
    return done[0][1] if done[0][0] == 0 else 0


def kill_when(scene: Path, out: Path, rows: int, timeout: float = 120) -> None:
    """Start segment in a process of its own and SIGKILL it once ``rows`` rows are in its store."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rsinfer.cli.main", "segment", str(scene), "-o", str(out), *SEGMENT, "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    store, deadline = store_path(out), time.monotonic() + timeout
    try:
        while completed_rows(store) < rows and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("fmt,seed", [("tif", 1), ("tif", 2), ("zarr", 3), ("zarr", 4)])
def test_sigkill_at_a_random_point_then_resume_gives_the_clean_runs_bytes(scene, clean, tmp_path, runner, fmt, seed):
    rows = random.Random(seed).randrange(128, 1400 - 128)  # somewhere inside the scene
    out = tmp_path / f"killed.{fmt}"
    kill_when(scene, out, rows)
    store = store_path(out)
    assert not out.exists() and os.path.isdir(store)  # nothing under the final name, the store kept
    refused = runner.invoke(main, ["segment", str(scene), "-o", str(out), *SEGMENT, "-q"])
    assert refused.exit_code == 1 and "--resume continues it" in refused.output
    res = runner.invoke(main, ["segment", str(scene), "-o", str(out), *SEGMENT, "-q", "--resume"])
    assert res.exit_code == 0, res.output
    assert _same_bytes(out, clean[fmt])
    assert not os.path.exists(store) and not os.path.exists(f"{out}.lock")


def test_sigkill_while_the_geotiff_is_assembled_then_resume_assembles_it_again(scene, clean, tmp_path, runner):
    out = tmp_path / "assembling.tif"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rsinfer.cli.main", "segment", str(scene), "-o", str(out), *SEGMENT, "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:  # every row is in the store; the COG is being made from it
        while not list(tmp_path.glob("*.scratch.tif")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    assert completed_rows(store_path(out)) == 1400  # the finished store, still resumable
    res = runner.invoke(main, ["segment", str(scene), "-o", str(out), *SEGMENT, "-q", "--resume"])
    assert res.exit_code == 0, res.output
    assert _same_bytes(out, clean["tif"])
    # the killed run's lock, partial and scratch files are gone with the store
    outputs = {"assembling.tif", "assembling_probs.tif", "assembling.tif.aux.xml", "assembling.qml"}
    assert {p.name for p in tmp_path.iterdir()} == outputs


def _same_bytes(a: Path, b: Path) -> bool:
    """Byte equality of two outputs (a GeoTIFF and its probabilities, or every file of a zarr store)."""
    if a.is_file():
        pa = [a, a.with_name(a.stem + "_probs" + a.suffix)]
        pb = [b, b.with_name(b.stem + "_probs" + b.suffix)]
        return all(x.read_bytes() == y.read_bytes() for x, y in zip(pa, pb, strict=True))
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return fa == fb and all((a / f).read_bytes() == (b / f).read_bytes() for f in fa)


@pytest.mark.slow
def test_sigterm_stops_with_143_keeps_the_rows_done_and_resume_finishes(scene, clean, tmp_path, runner):
    out = tmp_path / "term.zarr"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rsinfer.cli.main", "segment", str(scene), "-o", str(out), *SEGMENT, "-q"],
        stderr=subprocess.PIPE,
        text=True,
    )
    store = store_path(out)
    deadline = time.monotonic() + 120
    while completed_rows(store) < 256 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted by SIGTERM after" in lines[0] and "--resume" in lines[0]
    assert completed_rows(store) >= 256 and not out.exists()
    res = runner.invoke(main, ["segment", str(scene), "-o", str(out), *SEGMENT, "-q", "--resume"])
    assert res.exit_code == 0, res.output
    assert _same_bytes(out, clean["zarr"])


@pytest.mark.slow
def test_resume_refuses_a_partial_output_of_another_job(scene, tmp_path, runner):
    out = tmp_path / "o.tif"
    store = Path(store_path(out))
    kill_when_first_rows = ["segment", str(scene), "-o", str(out), *SEGMENT, "-q"]
    kill_when(scene, out, 128)
    assert store.is_dir()
    res = runner.invoke(main, [*kill_when_first_rows[:-1], "--overlap", "16", "--resume", "-q"])
    assert res.exit_code == 1
    assert "cannot resume" in res.output and "overlap: 32 → 16" in res.output
    assert store.is_dir()  # a refusal removes nothing
    res = runner.invoke(main, [*kill_when_first_rows, "--overwrite"])  # starts over
    assert res.exit_code == 0 and out.exists() and not store.exists()
