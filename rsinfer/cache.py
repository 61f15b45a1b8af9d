"""Where rsinfer keeps what it can make again: exported graphs, counted FLOPs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``RSINFER_CACHE``, else ~/.cache/rsinfer."""
    return Path(os.environ.get("RSINFER_CACHE", Path.home() / ".cache" / "rsinfer"))
