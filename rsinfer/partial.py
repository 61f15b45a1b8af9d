"""Partial outputs: where an unfinished segment job keeps its rows, and how a rerun resumes it.

A job writes into a zarr chunk store beside its final output, ``<final>.partial.zarr``,
whatever the final format: chunk files are written atomically by zarr, and the store's
``rsinfer.completed_rows`` attribute says which rows are done, so a job killed at any
point (even by SIGKILL) leaves a store that can be continued. A GeoTIFF output is
assembled from the finished store; a zarr output is the finished store itself.

The store also holds the job's fingerprint (``rsinfer-job.json``: input, model, weights
digest, tiling, blending...). ``--resume`` continues only a store whose fingerprint is this
job's, from the first chunk row not complete, so the result equals an uninterrupted run.
A store takes its name only with its fingerprint in it, and a finished zarr store's
fingerprint waits beside it (``<store>.job.json``) while the store becomes the output, so a
store left by a kill at any point can be resumed.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Any

from .errors import RsinferError
from .io.outputs import remove
from .tiling import Span

FINGERPRINT_FILE = "rsinfer-job.json"


def store_path(final: str | os.PathLike[str]) -> str:
    """The chunk store of an unfinished output: ``<final>.partial.zarr``."""
    return f"{os.fspath(final)}.partial.zarr"


def fresh_store_path(store: str) -> str:
    """Where a new chunk store is made before it takes its name: ``<final>.partial.new-<pid>.zarr``.

    A store is created and its fingerprint written there, then renamed to :func:`store_path`,
    so a store under that name always records its job, even when the process creating it
    was killed (a store without a fingerprint could never be resumed)."""
    return f"{store.removesuffix('.zarr')}.new-{os.getpid()}.zarr"


def unfinished_stores(store: str) -> list[Path]:
    """Stores a process was killed while creating (see :func:`fresh_store_path`)."""
    path = Path(store)
    return sorted(path.parent.glob(f"{glob.escape(path.name.removesuffix('.zarr'))}.new-*.zarr"))


def input_identity(path: str) -> dict[str, Any]:
    """Which input file, as of when: path, size and modification time."""
    st = os.stat(path)
    return {"input": os.path.abspath(path), "input_bytes": st.st_size, "input_mtime_ns": st.st_mtime_ns}


def write_fingerprint(store: str, fingerprint: dict[str, Any]) -> None:
    partial = Path(store) / f"{FINGERPRINT_FILE}.tmp-{os.getpid()}"
    partial.write_text(json.dumps(fingerprint, indent=1, sort_keys=True))
    os.replace(partial, Path(store) / FINGERPRINT_FILE)


def parked_fingerprint(store: str) -> Path:
    """Where a finished store's fingerprint waits while the store becomes a zarr output:
    ``<store>.job.json``, beside it (the output holds the job's result, not its recipe)."""
    return Path(f"{store}.job.json")


def park_fingerprint(store: str) -> None:
    """Move a finished store's fingerprint beside it, in one rename: killed at any point, the
    store can still be resumed (:func:`read_fingerprint` looks in both places)."""
    inside = Path(store) / FINGERPRINT_FILE
    if inside.exists():
        os.replace(inside, parked_fingerprint(store))


def remove_store(store: str) -> None:
    """The store and its fingerprint, wherever that is."""
    remove(store)
    remove(parked_fingerprint(store))


def read_fingerprint(store: str) -> dict[str, Any] | None:
    for place in (Path(store) / FINGERPRINT_FILE, parked_fingerprint(store)):
        try:
            value = json.loads(place.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None
    return None


def differences(recorded: dict[str, Any] | None, wanted: dict[str, Any]) -> list[str]:
    """What differs between the job that made a partial output and this one, as ``key: old → new``."""
    if recorded is None:
        return ["the partial output records no job (made by an older rsinfer, or damaged)"]
    keys = sorted(set(recorded) | set(wanted))
    return [f"{k}: {recorded.get(k)!r} → {wanted.get(k)!r}" for k in keys if recorded.get(k) != wanted.get(k)]


def resume_row(completed: list[Span], height: int, chunk: int) -> int:
    """The first row a resumed job must produce: the start of the first chunk row not complete."""
    done = completed[0].stop if completed and completed[0].start == 0 else 0
    if done >= height:
        return height
    return done - done % chunk


def check_resumable(store: str, fingerprint: dict[str, Any]) -> None:
    """Refuse to continue a store made by another job, saying what differs."""
    diff = differences(read_fingerprint(store), fingerprint)
    if diff:
        raise RsinferError(
            f"{store}: cannot resume, the partial output was made by another job ({'; '.join(diff)}); "
            "--overwrite starts over"
        )


def remove_stray_files(store: str) -> None:
    """Remove what a killed writer can leave in a store: zarr's half-written ``*.partial`` chunk
    files and our fingerprint's temporary file. Finished files are never touched."""
    for p in Path(store).rglob("*"):
        if p.is_file() and (p.name.endswith(".partial") or f"{FINGERPRINT_FILE}.tmp-" in p.name):
            remove(p)
