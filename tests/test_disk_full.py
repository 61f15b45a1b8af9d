"""A full disk: exit 1 with one line saying so, nothing under the final name, an earlier output intact.

The real case runs on a small tmpfs mounted by the test (root only; skipped elsewhere with
the reason); a fault-injecting store that raises ENOSPC at a chosen write runs everywhere.
"""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from rsinfer.cli.main import main
from rsinfer.io.zarr_writer import ZarrWriter

pytestmark = pytest.mark.slow

SEGMENT = ["--model", "simple-fcn", "--weights", "random", "--tile", "256", "--overlap", "32", "--device", "cpu", "-q"]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from rsinfer.synth import write_synthetic_scene

    path = tmp_path_factory.mktemp("scene") / "s.tif"
    write_synthetic_scene(path, path.with_name("s_labels.tif"), 700, 700, seed=3)
    return path


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs: room for one label map and its working store, not for much more."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if res.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> None:
    """Take all but ``leave`` bytes of the filesystem."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(disk / f"filler-{uuid.uuid4().hex}", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name or p.name.endswith(".lock"))


def test_disk_full_on_a_real_filesystem_fails_in_one_line_and_keeps_the_earlier_output(scene, small_disk, runner):
    out = small_disk / "labels.tif"
    first = runner.invoke(main, ["segment", str(scene), "-o", str(out), *SEGMENT])
    assert first.exit_code == 0, first.output
    before = out.read_bytes()
    fill(small_disk, leave=64 * 1024)  # too little for a second store and GeoTIFF
    res = runner.invoke(main, ["segment", str(scene), "-o", str(out), *SEGMENT, "--probs", "--overwrite"])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "labels.tif" in lines[0] and "disk full" in lines[0]
    assert out.read_bytes() == before  # the good output is untouched
    assert not (small_disk / "labels_probs.tif").exists() and leftovers(small_disk) == []


def test_disk_full_with_no_earlier_output_leaves_nothing(scene, small_disk, runner):
    fill(small_disk, leave=32 * 1024)
    res = runner.invoke(main, ["segment", str(scene), "-o", str(small_disk / "l.zarr"), *SEGMENT])
    assert res.exit_code == 1 and "disk full" in res.output and len(res.output.strip().splitlines()) == 1
    assert not (small_disk / "l.zarr").exists() and leftovers(small_disk) == []


@pytest.mark.parametrize("fmt", ["tif", "zarr"])
@pytest.mark.parametrize("failing_write", [1, 3])
def test_a_store_write_failing_with_enospc_is_reported_and_cleaned_up(
    scene, tmp_path, runner, monkeypatch, fmt, failing_write
):
    """Everywhere: the chunk store's n-th block write raises ENOSPC, as a full disk would."""
    out = tmp_path / f"labels.{fmt}"
    assert runner.invoke(main, ["segment", str(scene), "-o", str(out), *SEGMENT]).exit_code == 0
    before = sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    real, calls = ZarrWriter._write_block, []

    def failing(self, block):
        calls.append(block.rows)
        if len(calls) == failing_write:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, block)

    monkeypatch.setattr(ZarrWriter, "_write_block", failing)
    res = runner.invoke(main, ["segment", str(scene), "-o", str(out), *SEGMENT, "--overwrite"])
    assert (
        res.exit_code == 1
        and res.output.strip() == f"rsinfer: error: {out}.partial.zarr: cannot write the output (disk full)"
    )
    after = sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    assert after == before  # the earlier output as it was, and nothing else
