"""rsinfer batch without Ray: inputs to scenes (files, globs, folders, manifests), clashes, the plan,
the report files, and the one line when Ray is not installed."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest

from rsinfer.batch import (
    Scene,
    SceneResult,
    plan_batch,
    read_manifest,
    report_paths,
    resolve_inputs,
    summarize,
    summary_line,
    write_report,
)
from rsinfer.cli.main import main
from rsinfer.errors import InputError, RsinferError
from rsinfer.pipeline import output_paths


@pytest.fixture
def files(tmp_path):
    """``files("a.tif", "sub/b.tiff")``: empty files under tmp_path (resolution never opens them)."""

    def make(*names: str) -> list[str]:
        paths = []
        for name in names:
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
            paths.append(str(path))
        return paths

    return make


def pairs(scenes: list[Scene], root) -> list[tuple[str, str]]:
    return [(os.path.relpath(s.input, root), os.path.relpath(s.output, root)) for s in scenes]


def test_files_globs_and_folders_in_the_order_given(files, tmp_path):
    files("in/b.tif", "in/a.TIF", "in/c.tiff", "in/notes.txt.bak", "in/sub/d.tif", "x/z.tif", "y/q1.tif", "y/q2.tif")
    scenes = resolve_inputs(
        [str(tmp_path / "x/z.tif"), str(tmp_path / "in"), str(tmp_path / "y/q*.tif")], str(tmp_path / "out")
    )
    assert pairs(scenes, tmp_path) == [
        ("x/z.tif", "out/z.tif"),
        ("in/a.TIF", "out/a.tif"),  # a folder: its .tif/.tiff files, sorted, not its subfolders
        ("in/b.tif", "out/b.tif"),
        ("in/c.tiff", "out/c.tif"),
        ("y/q1.tif", "out/q1.tif"),  # a glob: sorted
        ("y/q2.tif", "out/q2.tif"),
    ]
    assert all(os.path.isabs(s.input) and os.path.isabs(s.output) for s in scenes)


def test_zarr_outputs_and_recursive_globs(files, tmp_path):
    files("in/2024/a.tif", "in/2025/b.tif")
    scenes = resolve_inputs([str(tmp_path / "in/**/*.tif")], str(tmp_path / "out"), fmt="zarr")
    assert pairs(scenes, tmp_path) == [("in/2024/a.tif", "out/a.zarr"), ("in/2025/b.tif", "out/b.zarr")]


def test_manifest_paths_are_relative_to_it_and_may_name_outputs(files, tmp_path):
    files("data/a.tif", "data/b.tif", "data/c.tif", "elsewhere/d.tif")
    manifest = tmp_path / "lists" / "m.csv"
    manifest.parent.mkdir()
    manifest.write_text(
        "\ufeffinput,output\n"  # a BOM and a header, as spreadsheets write them
        "# comment\n"
        "../data/a.tif,alpha\n"
        "\n"
        '"../data/b.tif", beta.zarr\n'
        "../data/c.tif\n"
        f"{tmp_path / 'elsewhere/d.tif'},\n"
    )
    scenes = resolve_inputs([], str(tmp_path / "out"), manifest=str(manifest))
    assert pairs(scenes, tmp_path) == [
        ("data/a.tif", "out/alpha.tif"),
        ("data/b.tif", "out/beta.zarr"),  # a name with a format keeps it
        ("data/c.tif", "out/c.tif"),
        ("elsewhere/d.tif", "out/d.tif"),
    ]
    # An INPUT ending .txt is a manifest too.
    text = tmp_path / "lists" / "m.txt"
    text.write_text("../data/c.tif\n")
    assert pairs(resolve_inputs([str(text)], str(tmp_path / "out")), tmp_path) == [("data/c.tif", "out/c.tif")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a.tif\nmissing.tif\n", "m.csv, line 2: missing.tif: no such file"),
        ("a.tif,x,y\n", "m.csv, line 1: expected 'input' or 'input,output name', found 3 columns"),
        ("# only a comment\n", "m.csv: the manifest lists no scene"),
        ("a.tif,sub/x\n", "give a file name, not a path"),
    ],
)
def test_bad_manifests_are_one_line(files, tmp_path, content, message):
    files("a.tif")
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(InputError, match=message):
        resolve_inputs([], str(tmp_path / "out"), manifest=str(tmp_path / "m.csv"))


def test_inputs_that_match_nothing_are_refused(files, tmp_path):
    files("empty/readme.md")
    out = str(tmp_path / "out")
    with pytest.raises(InputError, match="nope/\\*.tif: matches no file"):
        resolve_inputs([str(tmp_path / "nope/*.tif")], out)
    with pytest.raises(InputError, match="missing.tif: no such file or folder"):
        resolve_inputs([str(tmp_path / "missing.tif")], out)
    with pytest.raises(InputError, match="empty: no .tif or .tiff files"):
        resolve_inputs([str(tmp_path / "empty")], out)
    with pytest.raises(InputError, match="no scenes"):
        resolve_inputs([], out)
    with pytest.raises(InputError, match="missing.csv: cannot read the manifest"):
        read_manifest(str(tmp_path / "missing.csv"))


def test_name_clashes_are_refused(files, tmp_path):
    a1, a2, b = files("one/a.tif", "two/a.tiff", "one/b.tif")
    out = str(tmp_path / "out")
    with pytest.raises(RsinferError, match="out/a.tif: written by two inputs, .*one/a.tif and .*two/a.tiff"):
        resolve_inputs([a1, a2], out)
    with pytest.raises(RsinferError, match="one/a.tif: given twice"):
        resolve_inputs([str(tmp_path / "one"), a1], out)
    # a scene named like another's probabilities
    files("one/b_probs.tif")
    with pytest.raises(RsinferError, match="b_probs.tif: written by two inputs"):
        resolve_inputs([str(tmp_path / "one")], out, probs=True)
    # an output folder that is the input folder
    with pytest.raises(RsinferError, match="this output is the input"):
        resolve_inputs([b], str(tmp_path / "one"))


def test_plan_follows_resume_and_overwrite(files, tmp_path):
    ins = files("in/a.tif", "in/b.tif", "in/c.tif")
    out = tmp_path / "out"
    out.mkdir()
    scenes = resolve_inputs(ins, str(out))
    for done in output_paths(str(out / "a.tif"), probs=False):  # a.tif and its sidecars
        Path(done).write_bytes(b"done")
    (out / "b.tif.partial.zarr").mkdir()
    plan = plan_batch(scenes, probs=False, overwrite=False, resume=True)
    assert [os.path.basename(s.input) for s in plan.skip] == ["a.tif"]
    assert [os.path.basename(s.input) for s in plan.run] == ["b.tif", "c.tif"]
    with pytest.raises(RsinferError, match=r"a.tif: output exists \(and 1 more\); pass --resume"):
        plan_batch(scenes, probs=False, overwrite=False, resume=False)
    assert len(plan_batch(scenes, probs=False, overwrite=True, resume=False).run) == 3
    # with --probs a scene is finished only when its probabilities are there too
    with pytest.raises(RsinferError, match="a.tif: output exists"):
        plan_batch(scenes, probs=True, overwrite=False, resume=True)


def test_report_json_and_csv(tmp_path):
    rows = [
        SceneResult("/d/a.tif", "/o/a.tif", "ok", seconds=2.0, mpx_per_s=1.5, tiles=9, attempts=1, megapixels=3.0),
        SceneResult("/d/b.tif", "/o/b.tif", "failed", error="/d/b.tif: cannot read", attempts=3),
        SceneResult("/d/c.tif", "/o/c.tif", "skipped"),
    ]
    summary = summarize(rows, seconds=4.0, workers=2)
    assert summary == {
        "scenes": 3,
        "ok": 1,
        "failed": 1,
        "skipped": 1,
        "retries": 2,
        "workers": 2,
        "seconds": 4.0,
        "megapixels": 3.0,
        "mpx_per_s": 0.75,
    }
    assert summary_line(summary) == "rsinfer batch: 3 scenes, ok 1, failed 1, skipped 1, 4.0 s, 0.75 Mpx/s"
    assert report_paths(str(tmp_path / "r.csv")) == (str(tmp_path / "r.json"), str(tmp_path / "r.csv"))
    json_path, csv_path = write_report(str(tmp_path / "r.json"), rows, summary)
    with open(json_path) as f:
        report = json.load(f)
    assert report["summary"] == summary
    assert report["scenes"][1] == {
        "input": "/d/b.tif",
        "output": "/o/b.tif",
        "status": "failed",
        "error": "/d/b.tif: cannot read",
        "seconds": 0.0,
        "mpx_per_s": None,
        "tiles": None,
        "worker": "",
        "device": "",
        "gpus": "",
        "attempts": 3,
    }
    with open(csv_path, newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["status"] for r in table] == ["ok", "failed", "skipped"]
    assert table[0]["tiles"] == "9" and table[1]["tiles"] == "" and list(table[0]) == list(report["scenes"][0])
    assert sorted(os.listdir(tmp_path)) == ["r.csv", "r.json"]


def test_without_ray_one_line_names_the_extra(runner, files, tmp_path, monkeypatch):
    (scene,) = files("in/a.tif")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    res = runner.invoke(main, ["batch", scene, "-o", str(tmp_path / "out")])
    assert res.exit_code == 1
    assert res.output == "rsinfer: error: this needs Ray: pip install 'rsinfer[ray]'\n"
    assert not (tmp_path / "out").exists()


def test_cli_refuses_before_any_work(runner, files, tmp_path):
    (scene,) = files("in/a.tif")
    out = tmp_path / "out"
    res = runner.invoke(main, ["batch", "-o", str(out)])
    assert res.exit_code == 2 and "give INPUT... or --manifest FILE" in res.output
    res = runner.invoke(main, ["batch", str(tmp_path / "in/*.tiff"), "-o", str(out)])
    assert res.exit_code == 1 and res.output.endswith("in/*.tiff: matches no file\n")
    res = runner.invoke(main, ["batch", scene, "-o", str(out), "--device", "cuda:1"])
    assert res.exit_code == 1 and "--device cuda:1: Ray gives each worker its GPU" in res.output
    assert not out.exists()
