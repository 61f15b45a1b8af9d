"""The one output policy every command that writes follows (like rio's ``resolve_inout``).

- :func:`check_outputs`: before any work, an output that exists is refused unless
  ``--overwrite`` is given, and its folder must exist.
- :func:`partial_path`: an output is written under ``<final>.partial-<pid>`` beside its final
  name (same filesystem, so the rename is atomic); nothing else writes there.
- :func:`commit`: the partial is moved onto the final name (a directory store is swapped in).
- :func:`remove`: a partial (file or directory store) is removed after a failure.
- :func:`atomic_outputs`: the three together for commands that write whole files at once.
- :func:`refuse_inputs_as_outputs`: an output that is an input (a link to it included) is
  refused, even with ``--overwrite``.
- :class:`OutputLock`: ``<final>.lock`` names the job writing an output, so a second job
  refuses at start; a lock left by a dead process is taken over.
- :func:`describe_os_error`: "disk full", "permission denied"... for one-line messages.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import time
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


def partial_path(final: PathLike, pid: int | None = None) -> str:
    """Where ``final`` is written until it is complete: ``<final>.partial-<pid>`` (this process's)."""
    return f"{os.fspath(final)}.partial-{pid or os.getpid()}"


def remove(path: PathLike) -> None:
    """Remove a file or a directory store, if it exists."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def commit(partial: PathLike, final: PathLike, overwrite: bool = True) -> None:
    """Move ``partial`` onto ``final``; a directory target is moved aside first, then removed.

    Without ``overwrite`` a final that appeared while the job ran (another job's) is kept
    and this commit refused: the check runs again here, not only at start.
    """
    if not overwrite:
        if os.path.isdir(partial):
            if os.path.lexists(final):
                raise RsinferError(f"{final}: output appeared while this job ran; pass --overwrite to replace it")
            os.rename(partial, final)
        else:
            try:
                os.link(partial, final)  # fails if final exists: no window between check and rename
            except FileExistsError:
                raise RsinferError(
                    f"{final}: output appeared while this job ran; pass --overwrite to replace it"
                ) from None
            os.remove(partial)
        return
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


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` are one file: the same path, a symlink or a hard link to it."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_inputs_as_outputs(inputs: Sequence[PathLike], outputs: Sequence[PathLike]) -> None:
    """Refuse, before anything is opened, an output that would replace one of the inputs."""
    for out in outputs:
        for inp in inputs:
            if same_file(inp, out):
                raise RsinferError(f"{out}: this output is the input {inp}; choose another output name")


def describe_os_error(err: BaseException) -> str:
    """A short cause for a failed write: "disk full", "permission denied", ... or the error's first line."""
    causes = {
        errno.ENOSPC: "disk full",
        errno.EDQUOT: "disk quota exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "read-only file system",
    }
    if isinstance(err, OSError) and err.errno in causes:
        return causes[err.errno]
    text = str(err)
    for needle, cause in (
        ("No space left", "disk full"),
        ("Permission denied", "permission denied"),
        ("Read-only file system", "read-only file system"),
    ):
        if needle in text:
            return cause
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__


class OutputLock:
    """An exclusive lock beside an output, ``<final>.lock``, holding the writer's pid and host.

    A second job writing the same output refuses at start with the holder named. A lock
    whose process is gone (same host, pid not running) is stale and taken over.
    """

    def __init__(self, final: PathLike):
        self.final = os.fspath(final)
        self.path = f"{self.final}.lock"
        self._held = False
        self.stale_pid: int | None = None  # the dead process (this host) whose lock was taken over

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                if holder is not None and not _is_stale(holder):
                    raise RsinferError(
                        f"{self.final}: another job is writing this output (pid {holder.get('pid')} on "
                        f"{holder.get('host')}, since {holder.get('since')}); wait for it to finish"
                    ) from None
                # Stale (its process is gone) or unreadable: move it aside and try again.
                if holder is not None and isinstance(holder.get("pid"), int):
                    self.stale_pid = holder["pid"]
                with contextlib.suppress(FileNotFoundError):
                    os.replace(self.path, f"{self.path}.stale-{os.getpid()}")
                    os.remove(f"{self.path}.stale-{os.getpid()}")
                continue
            except OSError as err:
                raise RsinferError(f"{self.final}: cannot create {self.path} ({describe_os_error(err)})") from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self._held = True
            return
        raise RsinferError(f"{self.final}: cannot take the lock {self.path}")

    def holder(self) -> dict | None:
        try:
            with open(self.path) as f:
                value = json.load(f)
            return value if isinstance(value, dict) else None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self._held:
            remove(self.path)
            self._held = False


def _is_stale(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return False  # another machine's job: we cannot tell, so it stands
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
