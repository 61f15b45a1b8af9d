"""The batch's progress: the board workers report to, and the bar the driver draws from it."""

from rsinfer.batch.board import ProgressBoard, WorkerState
from rsinfer.cli.batch import BatchProgress


def state(worker: str, scene: str, pixels: int) -> WorkerState:
    return WorkerState(worker, scene, 1, 4, pixels, "cpu")


def test_a_dead_worker_leaves_the_board_and_its_late_updates_are_ignored():
    board = ProgressBoard()
    board.update(state("h:1", "/a.tif", 10))
    board.update(state("h:2", "/b.tif", 20))
    board.forget("h:1")
    board.update(state("h:1", "/a.tif", 30))  # sent before it died, arriving after
    assert [s.worker for s in board.snapshot()] == ["h:2"]


def test_a_finished_scene_counts_once_and_dead_workers_lose_their_row():
    with BatchProgress(total=3, disable=True) as progress:
        progress.workers([state("h:1", "/a.tif", 2_000_000), state("h:2", "/b.tif", 1_000_000)])
        assert progress._running_megapixels == 3.0 and set(progress._workers) == {"h:1", "h:2"}
        # a.tif's result arrives before its worker's idle report: its pixels are in the done total
        progress.scene_done(2.0, "/a.tif")
        progress.workers([state("h:1", "/a.tif", 2_000_000), state("h:2", "/b.tif", 1_500_000)])
        assert progress._megapixels_done + progress._running_megapixels == 3.5
        progress.workers([state("h:2", "/b.tif", 1_500_000)])  # h:1 died
        assert set(progress._workers) == {"h:2"}
