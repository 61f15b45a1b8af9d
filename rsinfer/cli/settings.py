"""Option defaults from a TOML file (``rsinfer --config FILE`` or ``RSINFER_CONFIG``).

One table per command, keys as the options' parameter names (``batch_size``) or flags
(``batch-size``); command-line options override the file::

    [segment]
    model = "lanet-lite"
    tile = 512
    batch-size = 8

Click applies them as the commands' ``default_map``, so every command reads them alike.
"""

from __future__ import annotations

from typing import Any

from rsinfer.errors import RsinferError


def load_defaults(path: str) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise RsinferError(f"{path}: reading a config file needs Python 3.11, or: pip install tomli") from None
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as err:
        raise RsinferError(f"{path}: cannot read the config file ({err.strerror})") from None
    except tomllib.TOMLDecodeError as err:
        raise RsinferError(f"{path}: not a valid TOML config file ({err})") from None
    defaults: dict[str, Any] = {}
    for command, table in data.items():
        if not isinstance(table, dict):
            raise RsinferError(f"{path}: `{command}` must be a table of options, e.g. [{command}]")
        defaults[command] = {key.replace("-", "_"): value for key, value in table.items()}
    return defaults
