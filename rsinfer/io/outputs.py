"""The one output policy every command that writes follows (like rio's ``resolve_inout``).

- :func:`check_outputs`: before any work, an output that exists is refused unless
  ``--overwrite`` is given, and its folder must exist.
- :func:`partial_path`: an output is written under ``<final>.partial-<pid>`` beside its final
  name (same filesystem, so the rename is atomic); nothing else writes there.
- :func:`commit`: the partial is moved onto the final name (a directory store is swapped in).
- :func:`remove`: a partial (file or directory store) is removed after a failure.
- :func:`atomic_outputs`: the three together for commands that write whole files at once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import RsinferError

PathLike = str | os.PathLike[str]


def check_outputs(paths: Sequence[PathLike], overwrite: bool) -> None:
    """Refuse outputs that exist (unless ``overwrite``) or whose folder does not exist."""
    for p in paths:
        if os.path.lexists(p) and not overwrite:
            raise RsinferError(f"{p}: output exists; pass --overwrite to replace it")
        parent = Path(p).resolve().parent
        if not parent.is_dir():
            raise RsinferError(f"{p}: output folder {parent} does not exist")


def partial_path(final: PathLike) -> str:
    """Where ``final`` is written until it is complete: ``<final>.partial-<pid>``."""
    return f"{os.fspath(final)}.partial-{os.getpid()}"


def remove(path: PathLike) -> None:
    """Remove a file or a directory store, if it exists."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def commit(partial: PathLike, final: PathLike) -> None:
    """Move ``partial`` onto ``final``; a directory target is moved aside first, then removed."""
    if os.path.isdir(final) and not os.path.islink(final):
        old = f"{os.fspath(final)}.old-{os.getpid()}"
        os.rename(final, old)
        os.rename(partial, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(partial, final)


@contextlib.contextmanager
def atomic_outputs(paths: Sequence[PathLike], overwrite: bool, check: bool = True) -> Iterator[list[str]]:
    """Check ``paths``, yield their partial names, and commit them all when the block succeeds.

    On any exception every partial is removed and the finals are left as they were. A path
    whose partial the block did not create is skipped at commit (optional outputs).
    """
    if check:
        check_outputs(paths, overwrite)
    partials = [partial_path(p) for p in paths]
    try:
        yield partials
    except BaseException:
        for partial in partials:
            remove(partial)
        raise
    try:
        for partial, final in zip(partials, paths, strict=True):
            if os.path.lexists(partial):
                commit(partial, final)
    finally:  # what a failed rename left behind
        for partial in partials:
            remove(partial)
