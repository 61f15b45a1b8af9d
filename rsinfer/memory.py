"""Process memory figures: what benchmarks and run reports quote."""

from __future__ import annotations

import resource
import sys


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (the kernel's high-water mark).

    Linux's ``VmHWM`` belongs to this program's address space; ``ru_maxrss`` would also
    count a parent's memory from before fork/exec, which a benchmark child must not.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def rss_mb() -> float:
    """Resident memory of this process now."""
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20
