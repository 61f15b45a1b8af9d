"""Segmentation networks and their registry (installed as ``rsinfer.models``)."""

# Importing a model module registers its entry points.
from . import ammunet, baselines, glcanet, glnet, hiresnet, lanet, simple  # noqa: F401,E402
from .config import GlobalLocalSpec, ModelConfig
from .registry import DEFAULT_MODEL, create_model, get_config, get_entry, list_models, register_model

__all__ = [
    "DEFAULT_MODEL",
    "GlobalLocalSpec",
    "ModelConfig",
    "create_model",
    "get_config",
    "get_entry",
    "list_models",
    "register_model",
]
