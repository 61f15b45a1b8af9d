"""Batch inputs: files, globs, folders and manifests resolved to scenes and their outputs,
and what each scene needs (run, resume, skip) — all decided before any work.
"""

from __future__ import annotations

import csv
import glob
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, RsinferError
from ..io.outputs import describe_os_error
from ..partial import store_path
from ..pipeline import output_paths

RASTER_SUFFIXES = (".tif", ".tiff")
MANIFEST_SUFFIXES = (".txt", ".csv")
OUTPUT_SUFFIXES = (".tif", ".tiff", ".zarr")
FORMATS = ("tif", "zarr")
DEVICES = ("auto", "cpu", "cuda")
MANIFEST_HEADERS = ("input", "path", "file", "scene")


@dataclass(frozen=True)
class Scene:
    """One input raster and its label map (absolute paths: actors may run elsewhere)."""

    input: str
    output: str


# --- inputs ----------------------------------------------------------------------------


def resolve_inputs(
    inputs: Sequence[str], outdir: str, fmt: str = "tif", manifest: str | None = None, probs: bool = False
) -> list[Scene]:
    """Files, globs (sorted), folders (their *.tif/*.tiff, sorted) and manifests, in the order
    given (``manifest`` last), as scenes writing ``outdir/<stem>.<fmt>`` or the manifest's names.

    Every input must exist, and no two scenes may write one file: both are checked here,
    before any work.
    """
    if fmt not in FORMATS:
        raise RsinferError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    entries: list[tuple[str, str | None]] = []
    for item in inputs:
        entries += _expand(item)
    if manifest:
        entries += read_manifest(manifest)
    if not entries:
        raise InputError("no scenes: give files, globs, folders or a manifest")
    outdir = os.path.abspath(os.path.expanduser(outdir))
    scenes = [Scene(os.path.abspath(inp), os.path.join(outdir, output_name(inp, name, fmt))) for inp, name in entries]
    check_clashes(scenes, probs)
    return scenes


def _expand(item: str) -> list[tuple[str, str | None]]:
    path = os.path.expanduser(item)
    if path.lower().endswith(MANIFEST_SUFFIXES) and os.path.isfile(path):
        return read_manifest(path)
    if os.path.isdir(path):
        return [(p, None) for p in folder_rasters(path)]
    if os.path.isfile(path):  # before globbing: a file may have [ ] in its name
        return [(path, None)]
    if any(c in path for c in "*?["):
        matches = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        if not matches:
            raise InputError(f"{item}: matches no file")
        return [(p, None) for p in matches]
    raise InputError(f"{item}: no such file or folder")


def folder_rasters(folder: str) -> list[str]:
    """The folder's *.tif/*.tiff files (not its subfolders'), sorted by name."""
    names = sorted(
        n for n in os.listdir(folder) if n.lower().endswith(RASTER_SUFFIXES) and os.path.isfile(os.path.join(folder, n))
    )
    if not names:
        raise InputError(f"{folder}: no .tif or .tiff files in this folder")
    return [os.path.join(folder, n) for n in names]


def read_manifest(path: str) -> list[tuple[str, str | None]]:
    """A manifest's scenes: one input per line, optionally a CSV second column with the output name.

    Relative inputs are relative to the manifest's folder; blank lines, ``#`` comments and a
    header row (``input,output``) are skipped.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a BOM from spreadsheet exports
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the manifest ({describe_os_error(err)})") from None
    base = os.path.dirname(os.path.abspath(path))
    entries: list[tuple[str, str | None]] = []
    reader = csv.reader(io.StringIO(text))
    for row in reader:
        cells = [c.strip() for c in row]
        while cells and not cells[-1]:
            cells.pop()
        if not cells or cells[0].startswith("#"):
            continue
        where = f"{path}, line {reader.line_num}"
        inp = os.path.join(base, os.path.expanduser(cells[0]))  # an absolute path stays as it is
        if not entries and cells[0].lower() in MANIFEST_HEADERS and not os.path.exists(inp):
            continue
        if len(cells) > 2:
            raise InputError(f"{where}: expected 'input' or 'input,output name', found {len(cells)} columns")
        if not os.path.isfile(inp):
            raise InputError(f"{where}: {cells[0]}: no such file")
        entries.append((inp, cells[1] if len(cells) == 2 else None))
    if not entries:
        raise InputError(f"{path}: the manifest lists no scene")
    return entries


def output_name(input: str, name: str | None, fmt: str) -> str:
    """``<stem>.<fmt>``, or a manifest's name (``.<fmt>`` added unless it ends .tif/.tiff/.zarr)."""
    if name is None:
        return f"{Path(input).stem}.{fmt}"
    if os.sep in name or (os.altsep and os.altsep in name) or name in (".", ".."):
        raise InputError(f"output name {name!r} for {input}: give a file name, not a path (outputs go in -o)")
    return name if name.lower().endswith(OUTPUT_SUFFIXES) else f"{name}.{fmt}"


def check_clashes(scenes: Sequence[Scene], probs: bool) -> None:
    """Refuse an input given twice, two scenes writing one file, and an output that is an input."""
    inputs = {os.path.realpath(s.input): s.input for s in scenes}
    writer: dict[str, str] = {}
    seen: set[str] = set()
    for s in scenes:
        if s.input in seen:
            raise RsinferError(f"{s.input}: given twice")
        seen.add(s.input)
        for out in [*output_paths(s.output, probs), store_path(s.output)]:
            if os.path.realpath(out) in inputs:
                raise RsinferError(
                    f"{out}: this output is the input {inputs[os.path.realpath(out)]}; choose another -o"
                )
            other = writer.setdefault(out, s.input)
            if other != s.input:
                raise RsinferError(
                    f"{out}: written by two inputs, {other} and {s.input}; rename one, or name the outputs "
                    "in a manifest (second column)"
                )


# --- the plan --------------------------------------------------------------------------


@dataclass
class Plan:
    run: list[Scene]
    skip: list[Scene]  # finished by an earlier run (--resume)


def plan_batch(scenes: Sequence[Scene], probs: bool, overwrite: bool, resume: bool) -> Plan:
    """What each scene needs, under the output policy of ``segment``, decided before any work.

    With ``resume`` a scene whose outputs all exist is skipped and one with a partial store
    is continued; otherwise existing outputs or stores are refused unless ``overwrite``.
    """
    plan = Plan([], [])
    refused: list[str] = []
    for s in scenes:
        finals = output_paths(s.output, probs)
        existing = [p for p in finals if os.path.lexists(p)]
        partial = os.path.lexists(store_path(s.output))
        if resume and len(existing) == len(finals) and not partial:
            plan.skip.append(s)
        elif existing and not overwrite:
            refused.append(f"{existing[0]}: output exists")
        elif partial and not (resume or overwrite):
            refused.append(f"{store_path(s.output)}: partial output of an interrupted run")
        else:
            plan.run.append(s)
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise RsinferError(
            f"{refused[0]}{more}; pass --resume to skip finished scenes and continue interrupted ones, "
            "or --overwrite to start them over"
        )
    return plan


# --- the worker ------------------------------------------------------------------------
