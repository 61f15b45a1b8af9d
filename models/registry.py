"""The model registry: ``@register_model`` / ``create_model`` / ``list_models``.

Each registered entry point is a function ``fn(config, **kwargs) -> nn.Module`` plus the
:class:`ModelConfig` holding its defaults. Entry points register when their module is
imported; ``rsinfer.models`` imports all of them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from .config import ModelConfig

Builder = Callable[..., nn.Module]
# Maps one key of a foreign checkpoint layout (e.g. the authors' code) to ours; None drops it.
KeyMap = Callable[[str], "str | None"]

# What `segment` runs when no --model is given: a demo model with bundled trained weights.
DEFAULT_MODEL = "lanet-lite"


@dataclass(frozen=True)
class ModelEntry:
    config: ModelConfig
    build: Builder
    key_map: KeyMap | None = None


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(config: ModelConfig, key_map: KeyMap | None = None) -> Callable[[Builder], Builder]:
    """Decorator: register ``build(config, **kwargs)`` under ``config.name``.

    ``key_map`` renames the keys of the authors' checkpoints to ours, so their files load.
    """

    def decorate(build: Builder) -> Builder:
        if config.name in _REGISTRY:
            raise ValueError(f"model {config.name!r} is registered twice")
        _REGISTRY[config.name] = ModelEntry(config, build, key_map)
        return build

    return decorate


def list_models(pattern: str = "*") -> list[str]:
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(list_models()) or "none"
        raise KeyError(f"unknown model {name!r} (known: {known})") from None


def get_config(name: str, **overrides) -> ModelConfig:
    entry = get_entry(name)
    return entry.config.replace(**overrides) if overrides else entry.config


def create_model(name: str, config: ModelConfig | None = None, **kwargs) -> nn.Module:
    """Build a registered model in eval mode with random weights.

    ``config`` (from :func:`get_config` with overrides) changes bands or classes;
    ``kwargs`` go to the builder (architecture knobs such as widths).
    """
    cfg = config or get_config(name)
    return get_entry(name).build(cfg, **kwargs).eval()
