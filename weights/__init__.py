"""Bundled checkpoints and their manifest (installed as ``rsinfer.weights_data``; data only)."""
