"""``rsinfer batch``: many scenes, each one :func:`~rsinfer.pipeline.run_segment`, on Ray actors.

The driver resolves the inputs to scenes and their outputs (:func:`resolve_inputs`) and
decides what each scene needs (:func:`plan_batch`) before any work, so a name clash or an
output in the way stops the batch before it starts. :func:`run_batch` hands the scenes one
at a time to :class:`SceneWorker` actors, retries failures with exponential backoff,
replaces actors that die, and returns one :class:`SceneResult` per scene, which
:func:`write_report` writes as JSON and CSV.

Ray is passed in by the caller (see :mod:`rsinfer.ray_runtime`), so this module imports
without it.
"""

from .inputs import Plan, Scene, plan_batch, read_manifest, resolve_inputs
from .report import SceneResult, report_paths, skipped_result, summarize, summary_line, write_report
from .scheduler import BatchOptions, check_options, run_batch
from .worker import SceneWorker

__all__ = [
    "BatchOptions",
    "Plan",
    "Scene",
    "SceneResult",
    "SceneWorker",
    "check_options",
    "plan_batch",
    "read_manifest",
    "report_paths",
    "resolve_inputs",
    "run_batch",
    "skipped_result",
    "summarize",
    "summary_line",
    "write_report",
]
