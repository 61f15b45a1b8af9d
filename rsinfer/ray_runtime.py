"""Ray for rsinfer's job layer: an embedded local instance by default, a cluster with ``--address``.

Without an address, :func:`ray_session` starts a local Ray for the run (this machine's CPUs
and GPUs) and shuts it down at the end, leaving nothing running; with ``auto`` or
``HOST:PORT`` it joins an existing cluster (``ray start --head`` on one machine, ``ray start
--address ...`` on the others) and leaves it running. Ray is the optional extra
``rsinfer[ray]``: without it, the commands that need it say how to install it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

from .errors import RsinferError

INSTALL_HINT = "this needs Ray: pip install 'rsinfer[ray]'"


def import_ray() -> Any:
    """The ``ray`` module, or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RsinferError(INSTALL_HINT) from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> Iterator[Any]:
    """Ray, initialised for the block: joined at ``address``, or started locally and shut down after.

    ``num_cpus``/``num_gpus`` size a local instance (tests start one with 2 CPUs); they are
    ignored when joining a cluster, whose resources are its own.
    """
    ray = import_ray()
    if ray.is_initialized():  # a caller (a test, a notebook) already runs one: use it as it is
        yield ray
        return
    env = {"env_vars": {"RAY_DEDUP_LOGS": "0"}}
    # ray.init installs its own SIGTERM handler (exit at once): keep the caller's, which
    # stop the run cleanly (see rsinfer.signals).
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=False, logging_level=logging.WARNING)
    else:
        # Ray announces that the instance it starts uses token authentication, as it should;
        # the instance lives only for this command, so the notice is noise on every run.
        notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
        level = notice.level
        notice.setLevel(logging.ERROR)
        try:
            ray.init(
                num_cpus=num_cpus or os.cpu_count(),
                num_gpus=num_gpus,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
                runtime_env=env,
            )
        finally:
            notice.setLevel(level)
    if threading.current_thread() is threading.main_thread():
        for s, h in handlers.items():
            if h is not None:
                signal.signal(s, h)
    try:
        yield ray
    finally:
        ray.shutdown()
