"""segment --distributed: strips of chunk rows on Ray workers give segment's output, byte for byte."""

from __future__ import annotations

import glob
import os
import signal
import threading
import time

import pytest

from rsinfer.cli.main import main
from rsinfer.distributed import strips
from rsinfer.tiling import Span

SEGMENT = ["--model", "lanet-lite", "--tile", "128", "--overlap", "32", "--device", "cpu", "-q"]


@pytest.mark.parametrize(
    "rows,chunk,parts,want",
    [
        (Span(0, 1000), 128, 3, [Span(0, 384), Span(384, 640), Span(640, 1000)]),
        (Span(0, 100), 128, 4, [Span(0, 100)]),  # one chunk row: one strip
        (Span(256, 700), 128, 2, [Span(256, 512), Span(512, 700)]),  # a resumed job's rows
        (Span(0, 512), 128, 9, [Span(0, 128), Span(128, 256), Span(256, 384), Span(384, 512)]),
    ],
)
def test_strips_are_whole_chunk_rows_covering_the_rows_once(rows, chunk, parts, want):
    got = strips(rows, chunk, parts)
    assert got == want
    assert all(s.start % chunk == 0 for s in got) and got[0].start == rows.start and got[-1].stop == rows.stop


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from rsinfer.synth import write_synthetic_scene

    path = tmp_path_factory.mktemp("scene") / "s.tif"
    write_synthetic_scene(path, path.with_name("s_labels.tif"), 300, 700, seed=11)
    return path


def same_files(a, b) -> bool:
    if a.is_file():
        return a.read_bytes() == b.read_bytes()
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return fa == fb and all((a / f).read_bytes() == (b / f).read_bytes() for f in fa)


def kill_a_process_titled(title: str, after: float, killed: list[int], timeout: float = 60) -> threading.Thread:
    """A thread that SIGKILLs the first process whose title is ``title`` (Ray names a worker
    process after the task it runs: ``ray::fill_strip``) once it has run ``after`` seconds."""

    def watch() -> None:
        seen: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for path in glob.glob("/proc/[0-9]*/cmdline"):
                try:
                    with open(path, "rb") as f:
                        name = f.read().split(b"\0")[0].decode(errors="replace")
                except OSError:
                    continue
                if name != title:
                    continue
                first = seen.setdefault(path, time.monotonic())
                if time.monotonic() - first >= after:
                    pid = int(path.split("/")[2])
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra,fmt,kill",
    [
        ([], "tif", True),  # a worker killed mid-strip: Ray reruns its strip
        (["--blend", "linear", "--probs"], "zarr", False),
        (["--blend", "gaussian"], "tif", False),
        (["--model", "glcanet-lite"], "tif", False),
    ],
)
def test_distributed_3_is_byte_identical_to_one_process(ray_local, scene, tmp_path, runner, extra, fmt, kill):
    single, dist = tmp_path / f"single.{fmt}", tmp_path / f"dist.{fmt}"
    assert runner.invoke(main, ["segment", str(scene), "-o", str(single), *SEGMENT, *extra]).exit_code == 0
    killed: list[int] = []
    killer = kill_a_process_titled("ray::fill_strip", 0.5, killed) if kill else None
    res = runner.invoke(main, ["segment", str(scene), "-o", str(dist), *SEGMENT, *extra, "--distributed", "3"])
    assert res.exit_code == 0, res.output
    if killer:
        killer.join()
        assert len(killed) == 1 and killed[0] != os.getpid()  # a strip's worker did die
    assert same_files(dist, single)
    if "--probs" in extra and fmt == "tif":
        assert same_files(tmp_path / "dist_probs.tif", tmp_path / "single_probs.tif")
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith((".lock", ".zarr")) or ".partial" in p.name)
    assert left == (sorted([dist.name, single.name]) if fmt == "zarr" else [])  # no store, no lock, no partial file
