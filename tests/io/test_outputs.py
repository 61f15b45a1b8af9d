"""rsinfer.io.outputs: the one output policy — exists checks, partial names, locks, never an input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from rsinfer.cli.main import main
from rsinfer.errors import RsinferError
from rsinfer.io.outputs import (
    OutputLock,
    atomic_outputs,
    commit,
    describe_os_error,
    partial_path,
    refuse_inputs_as_outputs,
)


def test_atomic_outputs_commit_on_success_and_remove_partials_on_failure(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    with atomic_outputs([a, b], overwrite=False) as (pa, pb):
        assert pa == partial_path(a)
        open(pa, "w").write("1")
        open(pb, "w").write("2")
    assert a.read_text() == "1" and b.read_text() == "2"
    with pytest.raises(ZeroDivisionError), atomic_outputs([a], overwrite=True) as (pa,):
        open(pa, "w").write("new")
        1 / 0
    assert a.read_text() == "1" and sorted(os.listdir(tmp_path)) == ["a.json", "b.json"]
    with pytest.raises(RsinferError, match="output exists; pass --overwrite"), atomic_outputs([a], overwrite=False):
        pass


def test_commit_without_overwrite_refuses_an_output_that_appeared_meanwhile(tmp_path):
    final, partial = tmp_path / "o.tif", tmp_path / "o.tif.partial-1"
    partial.write_text("mine")
    final.write_text("another job's")
    with pytest.raises(RsinferError, match="appeared while this job ran"):
        commit(partial, final, overwrite=False)
    assert final.read_text() == "another job's"
    store = tmp_path / "s.zarr.partial"
    store.mkdir()
    (tmp_path / "s.zarr").mkdir()
    with pytest.raises(RsinferError, match="appeared while this job ran"):
        commit(store, tmp_path / "s.zarr", overwrite=False)


@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
def test_an_output_that_is_the_input_is_refused_even_with_overwrite(make_raster, random_image, tmp_path, runner, link):
    src = make_raster(random_image(64, 64))
    out = {"same": src, "symlink": tmp_path / "sym.tif", "hardlink": tmp_path / "hard.tif"}[link]
    if link == "symlink":
        out.symlink_to(src)
    elif link == "hardlink":
        os.link(src, out)
    before = src.read_bytes()
    with pytest.raises(RsinferError, match="this output is the input"):
        refuse_inputs_as_outputs([src], [out])
    res = runner.invoke(main, ["segment", str(src), "-o", str(out), "--overwrite", "-q", "--model", "simple-fcn"])
    assert res.exit_code == 1 and "this output is the input" in res.output
    assert src.read_bytes() == before


def test_a_second_job_on_the_same_output_refuses_naming_the_holder(tmp_path):
    out = tmp_path / "o.tif"
    with OutputLock(out):
        holder = json.loads((tmp_path / "o.tif.lock").read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(RsinferError, match=rf"another job is writing this output \(pid {os.getpid()} on"):
            OutputLock(out).acquire()
    assert not (tmp_path / "o.tif.lock").exists()


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = tmp_path / "o.tif.lock"
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "since": "earlier"}))
    with OutputLock(tmp_path / "o.tif"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    other_host = {"pid": int(dead.stdout), "host": "elsewhere.example", "since": "now"}
    lock.write_text(json.dumps(other_host))  # another machine's job: cannot tell, so it stands
    with pytest.raises(RsinferError, match="on elsewhere.example"):
        OutputLock(tmp_path / "o.tif").acquire()


@pytest.mark.parametrize(
    "err,cause",
    [
        (OSError(28, "No space left on device"), "disk full"),
        (PermissionError(13, "Permission denied"), "permission denied"),
        (OSError(30, "Read-only file system"), "read-only file system"),
        (RuntimeError("TIFFAppendToStrip: Write error at scanline 3: No space left on device"), "disk full"),
    ],
)
def test_write_failures_are_named_by_their_cause(err, cause):
    assert describe_os_error(err) == cause


def test_a_read_only_folder_is_one_line(make_raster, random_image, tmp_path, runner):
    src = make_raster(random_image(64, 64))
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):  # root writes anywhere on a normal filesystem
            pytest.skip("this user can write to read-only folders")
        res = runner.invoke(main, ["segment", str(src), "-o", str(folder / "o.tif"), "-q", "--model", "simple-fcn"])
    finally:
        folder.chmod(0o755)
    assert res.exit_code == 1 and "permission denied" in res.output and len(res.output.strip().splitlines()) == 1
