"""Segmentation networks and their registry (installed as ``rsinfer.models``)."""
from .config import ModelConfig
from .registry import create_model, get_config, list_models, register_model

# Importing a model module registers its entry points.
from . import ammunet, lanet, simple  # noqa: F401,E402

__all__ = ["ModelConfig", "create_model", "get_config", "list_models", "register_model"]
