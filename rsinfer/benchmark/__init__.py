"""``rsinfer bench``: memory (patch vs global inference) and speed (params, GFLOPs, latency, FPS)."""
