"""Log lines on stderr (and in --log-file) through the ``logging`` module.

The library logs what it is doing (loading a model, exporting a graph, progress when no
terminal shows a bar) on the ``rsinfer`` logger; the command line decides what is shown:
info by default, warnings only with ``-q``, debug with ``-vv``.
"""

from __future__ import annotations

import logging

LOGGER = "rsinfer"


def setup_logging(verbose: int, quiet: bool, log_file: str | None) -> None:
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):  # a second invocation in one process (tests) starts afresh
        logger.removeHandler(handler)
        handler.close()
    level = logging.WARNING if quiet else logging.DEBUG if verbose >= 2 else logging.INFO
    console = _StderrHandler()
    console.setFormatter(logging.Formatter("rsinfer: %(message)s"))
    console.setLevel(level)
    logger.addHandler(console)
    if log_file:
        from rsinfer.errors import RsinferError

        try:
            to_file = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as err:
            raise RsinferError(f"{log_file}: cannot open the log file ({err.strerror})") from None
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        to_file.setLevel(logging.DEBUG)
        logger.addHandler(to_file)
    logger.setLevel(logging.DEBUG if log_file or verbose >= 2 else level)
    logger.propagate = False


def quiet_console() -> None:
    """A command's ``-q``: only warnings and errors reach stderr (the log file keeps everything)."""
    for handler in logging.getLogger(LOGGER).handlers:
        if isinstance(handler, _StderrHandler):
            handler.setLevel(max(handler.level, logging.WARNING))


class _StderrHandler(logging.Handler):
    """Writes to the current ``sys.stderr`` at each line: through a live progress display's
    proxy (lines appear above the bar), or a test runner's capture."""

    def emit(self, record: logging.LogRecord) -> None:
        import sys

        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)
