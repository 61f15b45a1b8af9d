"""rsinfer batch on a local Ray (2 CPUs and one simulated GPU, started once for the module):
outputs equal to segment's, a corrupt scene failing alone, --resume, a worker that dies
mid-scene, Ctrl-C, GPU placement, --split, manifests, name clashes."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rsinfer.cli.main import main
from rsinfer.pipeline import JobInterrupted, SegmentOptions, output_paths, run_segment
from rsinfer.signals import StopRequest
from rsinfer.synth.scene import write_synthetic_scene

ray = pytest.importorskip("ray")

NAMES = ("a", "b", "c")
SEGMENT = dict(model="lanet-lite", tile=128, overlap=32)
OPTS = ["--model", "lanet-lite", "--tile", "128", "--overlap", "32", "--retry-delay", "0.2", "--device", "cpu"]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # ray_session uses this Ray as it is. Ray takes the GPU on trust: actors asking for it are
    # placed and given CUDA_VISIBLE_DEVICES as on a GPU machine (torch still sees no CUDA).
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def kill_when_found(pid_of, killed: list[int], timeout: float = 60) -> threading.Thread:
    """A thread that SIGKILLs the process ``pid_of()`` names as soon as it names one: a real
    kill -9 of a Ray actor at the point the caller watches for."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = pid_of()
            if pid is None:
                time.sleep(0.002)
                continue
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def kill_the_worker_of(output, killed: list[int], timeout: float = 60) -> threading.Thread:
    """Kill the worker writing ``output`` as soon as it starts (the output's lock names its pid)."""

    def pid_of() -> int | None:
        try:
            return int(json.loads(Path(f"{output}.lock").read_text())["pid"])
        except (OSError, ValueError, KeyError):
            return None

    return kill_when_found(pid_of, killed, timeout)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    labels = tmp_path_factory.mktemp("labels")
    for seed, name in enumerate(NAMES):
        write_synthetic_scene(folder / f"{name}.tif", labels / f"{name}.tif", 300, 300, seed=seed)
    return folder


@pytest.fixture(scope="module")
def reference_dir(scenes, tmp_path_factory):
    """segment's outputs for each scene, run in this process."""
    out = tmp_path_factory.mktemp("reference")
    for name in NAMES:
        run_segment(SegmentOptions(str(scenes / f"{name}.tif"), str(out / f"{name}.tif"), device="cpu", **SEGMENT))
    return out


@pytest.fixture(scope="module")
def reference(reference_dir):
    """segment's bytes for each scene."""
    return {name: (reference_dir / f"{name}.tif").read_bytes() for name in NAMES}


def files_of(folder, outputs, others) -> list[str]:
    """The names in ``folder`` when it holds exactly ``outputs`` (with their sidecars) and ``others``."""
    names = [os.path.basename(p) for name in outputs for p in output_paths(str(folder / name), probs=False)]
    return sorted([*names, *others])


def read_report(path):
    with open(path) as f:
        report = json.load(f)
    with open(path.with_suffix(".csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["input"] for r in rows] == [r["input"] for r in report["scenes"]]
    assert [r["status"] for r in rows] == [r["status"] for r in report["scenes"]]
    return {os.path.basename(r["input"]): r for r in report["scenes"]}, report["summary"]


def test_batch_matches_segment_and_a_corrupt_scene_fails_alone(runner, scenes, reference, real_data, tmp_path):
    corrupt = tmp_path / "in" / "corrupt.tif"
    corrupt.parent.mkdir()
    shutil.copy(real_data / "corrupt.tif", corrupt)
    out = tmp_path / "out"  # created by batch
    res = runner.invoke(
        main, ["batch", str(scenes / "*.tif"), str(corrupt), "-o", str(out), *OPTS, "--report", str(out / "r.json")]
    )
    assert res.exit_code == 1, res.output
    for name in NAMES:
        assert (out / f"{name}.tif").read_bytes() == reference[name]
    assert sorted(os.listdir(out)) == files_of(out, ["a.tif", "b.tif", "c.tif"], ["r.csv", "r.json"])  # no failure

    rows, summary = read_report(out / "r.json")
    assert [rows[f"{n}.tif"]["status"] for n in NAMES] == ["ok"] * 3
    assert all(rows[f"{n}.tif"]["tiles"] == 9 and rows[f"{n}.tif"]["device"] == "cpu" for n in NAMES)
    failed = rows["corrupt.tif"]
    assert failed["status"] == "failed" and failed["attempts"] == 1  # bad input is not retried
    assert "corrupt.tif" in failed["error"] and "cannot read" in failed["error"]
    assert summary["scenes"] == 4 and summary["ok"] == 3 and summary["failed"] == 1 and summary["workers"] == 2

    lines = res.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("rsinfer batch: failed:")] == [
        f"rsinfer batch: failed: {failed['error']}"
    ]
    assert lines[-1].startswith("rsinfer batch: 4 scenes, ok 3, failed 1, skipped 0,") and "Mpx/s" in lines[-1]


def test_resume_skips_finished_scenes_and_continues_interrupted_ones(
    runner, scenes, reference, reference_dir, tmp_path
):
    out = tmp_path / "out"
    out.mkdir()
    for f in output_paths(str(reference_dir / "a.tif"), probs=False):  # finished by an earlier run (with its sidecars)
        shutil.copy(f, out)
    os.utime(out / "a.tif", (1e9, 1e9))
    stop = StopRequest()
    with pytest.raises(JobInterrupted):  # b: stopped after its first batch, its store kept
        run_segment(
            SegmentOptions(str(scenes / "b.tif"), str(out / "b.tif"), device="cpu", **SEGMENT),
            progress=lambda *_: stop.set(signal.SIGTERM),
            stop=stop,
        )
    assert (out / "b.tif.partial.zarr").is_dir()
    args = ["batch", str(scenes), "-o", str(out), *OPTS, "--report", str(out / "r.json"), "-q"]

    refused = runner.invoke(main, args)  # c never started
    assert refused.exit_code == 1 and "--resume" in refused.output and "a.tif: output exists" in refused.output
    assert sorted(os.listdir(out)) == files_of(out, ["a.tif"], ["b.tif.partial.zarr"])

    res = runner.invoke(main, [*args, "--resume"])
    assert res.exit_code == 0, res.output
    rows, summary = read_report(out / "r.json")
    assert {n: r["status"] for n, r in rows.items()} == {"a.tif": "skipped", "b.tif": "ok", "c.tif": "ok"}
    assert os.stat(out / "a.tif").st_mtime == 1e9
    for name in NAMES:
        assert (out / f"{name}.tif").read_bytes() == reference[name]
    assert not (out / "b.tif.partial.zarr").exists()

    mtimes = {name: os.stat(out / f"{name}.tif").st_mtime_ns for name in NAMES}
    again = runner.invoke(main, [*args, "--resume"])  # all done: nothing runs
    assert again.exit_code == 0, again.output
    rows, summary = read_report(out / "r.json")
    assert summary["skipped"] == 3 and summary["workers"] == 0
    assert {name: os.stat(out / f"{name}.tif").st_mtime_ns for name in NAMES} == mtimes


def test_a_worker_that_dies_mid_scene_is_replaced_and_the_scene_rerun(runner, scenes, reference, tmp_path):
    manifest = tmp_path / "lists" / "scenes.csv"
    manifest.parent.mkdir()
    a, b = (os.path.relpath(scenes / f"{n}.tif", manifest.parent) for n in "ab")
    manifest.write_text(f"input,output\n{a},first\n# a comment\n\n{b},second.tif\n")
    out = tmp_path / "out"
    killed: list[int] = []
    killer = kill_the_worker_of(out / "second.tif", killed)
    res = runner.invoke(main, ["batch", str(manifest), "-o", str(out), *OPTS, "--report", str(out / "r.json"), "-q"])
    killer.join()
    assert res.exit_code == 0, res.output
    assert len(killed) == 1 and killed[0] != os.getpid()  # a worker process did die
    assert (out / "first.tif").read_bytes() == reference["a"]
    assert (out / "second.tif").read_bytes() == reference["b"]
    assert sorted(os.listdir(out)) == files_of(out, ["first.tif", "second.tif"], ["r.csv", "r.json"])  # no lock
    rows, summary = read_report(out / "r.json")
    assert rows["a.tif"]["attempts"] == 1 and rows["b.tif"]["attempts"] == 2
    assert rows["b.tif"]["status"] == "ok" and summary["retries"] == 1


@pytest.mark.parametrize("behind", [True, False])
def test_a_worker_assembles_one_scene_while_the_next_is_on_the_model(scenes, reference, tmp_path, behind):
    from rsinfer.batch import BatchOptions, Scene, run_batch

    todo = [Scene(str(scenes / f"{n}.tif"), str(tmp_path / f"{n}.tif")) for n in NAMES]
    opts = BatchOptions(segment=dict(SEGMENT), device="cpu", workers=1, assemble_behind=behind)
    results, workers = run_batch(ray, todo, opts)
    assert workers == 1 and [r.status for r in results] == ["ok"] * 3
    assert {n: (tmp_path / f"{n}.tif").read_bytes() for n in NAMES} == reference
    ran = sorted(results, key=lambda r: r.on_model[0] if r.on_model else 0.0)  # in the order they got the model
    overlaps = []
    for first, second in zip(ran, ran[1:]):
        assert first.on_model and second.on_model and first.ended
        assert first.on_model[1] <= second.on_model[0]  # one scene at a time on the model
        # the next scene took the model while this one's GeoTIFF was being assembled
        overlaps.append(second.on_model[0] < first.ended)
    assert any(overlaps) if behind else not any(overlaps)


def test_a_worker_killed_while_it_assembles_one_scene_and_runs_another_reruns_both(scenes, reference, tmp_path):
    from rsinfer.batch import BatchOptions, Scene, run_batch

    def assembling() -> int | None:  # the COG's scratch file names the worker's pid
        for scratch in tmp_path.glob("*.partial-*.scratch.tif"):
            return int(scratch.name.split(".partial-")[1].split(".")[0])
        return None

    killed: list[int] = []
    killer = kill_when_found(assembling, killed)
    todo = [Scene(str(scenes / f"{n}.tif"), str(tmp_path / f"{n}.tif")) for n in NAMES]
    opts = BatchOptions(segment=dict(SEGMENT), device="cpu", workers=1, retry_delay=0.1)
    results, _ = run_batch(ray, todo, opts)
    killer.join()
    assert len(killed) == 1 and killed[0] != os.getpid()
    assert [r.status for r in results] == ["ok"] * 3, [(r.error, r.attempts) for r in results]
    assert {n: (tmp_path / f"{n}.tif").read_bytes() for n in NAMES} == reference
    # the scene being assembled and the one on the model died with the worker; the third had not started
    assert sorted(r.attempts for r in results) == [1, 2, 2]
    assert not list(tmp_path.glob("*.lock")) and not list(tmp_path.glob("*.partial*"))


def test_two_inputs_with_one_stem_are_refused_before_anything_runs(runner, scenes, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(scenes / "a.tif", other / "a.tif")
    out = tmp_path / "out"
    res = runner.invoke(main, ["batch", str(scenes), str(other), "-o", str(out), *OPTS])
    assert res.exit_code == 1
    assert res.output.count("\n") == 1 and "written by two inputs" in res.output and "a.tif" in res.output
    assert not out.exists()


def test_gpu_workers_are_placed_by_ray_and_two_share_a_gpu_at_half_each(runner, scenes, reference, tmp_path):
    out = tmp_path / "out"
    args = [str(scenes / "a.tif"), str(scenes / "b.tif"), "-o", str(out), *OPTS, "--report", str(out / "r.json")]
    res = runner.invoke(main, ["batch", *args, "--gpus-per-worker", "0.5", "--cpus-per-worker", "0.5", "-q"])
    assert res.exit_code == 0, res.output
    rows, summary = read_report(out / "r.json")
    assert summary["workers"] == 2  # one simulated GPU holds two half-GPU workers
    assert [rows[n]["gpus"] for n in ("a.tif", "b.tif")] == ["0", "0"]
    assert rows["a.tif"]["worker"] != rows["b.tif"]["worker"]
    assert (out / "a.tif").read_bytes() == reference["a"] and (out / "b.tif").read_bytes() == reference["b"]

    # On its own, a worker on a GPU node asks for the whole GPU and runs on CUDA: here torch has
    # none, which is one line naming the scene, not a crash.
    on_gpu = [a for a in OPTS if a not in ("--device", "cpu")]
    res = runner.invoke(main, ["batch", str(scenes / "a.tif"), "-o", str(tmp_path / "auto"), *on_gpu, "-q"])
    assert res.exit_code == 1
    assert "a.tif: Ray gave this worker GPU 0 but torch sees no CUDA device" in res.output


def test_split_cuts_each_scene_into_strips_with_segments_bytes(runner, scenes, reference, tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(
        main, ["batch", str(scenes / "c.tif"), "-o", str(out), *OPTS, "--split", "3", "--report", str(out / "r.json")]
    )
    assert res.exit_code == 0, res.output
    assert (out / "c.tif").read_bytes() == reference["c"]
    rows, summary = read_report(out / "r.json")
    assert rows["c.tif"]["status"] == "ok" and rows["c.tif"]["worker"] == "3 strips" and rows["c.tif"]["tiles"] == 9


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_stops_the_batch_keeps_partial_work_and_resume_finishes_it(
    local_ray, runner, scenes, reference, tmp_path, signum
):
    out = tmp_path / "out"
    # Batches of one tile: a stop point after every tile (the bytes do not depend on the batch size).
    args = ["batch", str(scenes / "a.tif"), str(scenes / "b.tif"), "-o", str(out), *OPTS, "--address", local_ray]
    args += ["--batch-size", "1"]
    driver = subprocess.Popen(
        [sys.executable, "-m", "rsinfer.cli.main", *args, "-q"], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not list(out.glob("*.partial.zarr")) and time.monotonic() < deadline:
        time.sleep(0.01)  # until a worker has started writing a scene
    driver.send_signal(signum)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 128 + signum, err  # Ray's own SIGTERM handler must not take over
    for done in out.glob("*.tif"):  # a scene that finished before the signal is whole
        assert done.read_bytes() == reference[done.stem]
    assert not list(out.glob("*.lock")) and not list(out.glob("*.partial-*"))
    assert list(out.glob("*.partial.zarr"))  # what was done is kept for --resume

    res = runner.invoke(main, [*args, "--resume", "-q"])
    assert res.exit_code == 0, res.output
    for name in "ab":
        assert (out / f"{name}.tif").read_bytes() == reference[name]
    assert not list(out.glob("*.partial.zarr"))
