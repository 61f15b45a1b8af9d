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


def load_defaults(path: str, group: Any) -> dict[str, Any]:
    """The file's tables as click ``default_map`` entries of ``group``'s commands; an unknown
    command or option is one error line (a typo must not be ignored silently)."""
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
    return _defaults_for(path, group, data, "")


def _defaults_for(path: str, command: Any, table: dict[str, Any], where: str) -> dict[str, Any]:
    import click

    subcommands = getattr(command, "commands", {})
    names: dict[str, str] = {}  # "batch-size", "batch_size" -> "batch_size"
    for param in command.params:
        if isinstance(param, click.Option) and param.name:
            names[param.name] = param.name
            names.update({opt.lstrip("-"): param.name for opt in param.opts if opt.startswith("--")})
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key in subcommands and isinstance(value, dict):
            out[key] = _defaults_for(path, subcommands[key], value, f"{where}{key}.")
        elif key.replace("_", "-") in names or key in names:
            out[names.get(key) or names[key.replace("_", "-")]] = value
        else:
            known = sorted(subcommands) if not where else sorted({n.replace("_", "-") for n in names.values()})
            raise RsinferError(
                f"{path}: unknown {'command' if not where else 'option'} `{where}{key}` (known: {', '.join(known)})"
            )
    return out
