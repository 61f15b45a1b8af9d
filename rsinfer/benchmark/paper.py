"""The papers' own efficiency figures, shown beside ours and always marked as the paper's."""

from __future__ import annotations

# GLCANet paper, Table 1: DeepGlobe, 2448x2448 images; memory from gpustat, batch 1, no
# gradients, one NVIDIA 1080Ti. (patch mIoU %, patch MB, global mIoU %, global MB)
MEMORY_TABLE_SOURCE = "GLCANet paper, Table 1 (DeepGlobe 2448², gpustat, batch 1, NVIDIA 1080Ti)"
PAPER_MEMORY = {
    "unet": (37.3, 949, 38.4, 5507),
    "icnet": (35.5, 1195, 40.2, 2557),
    "pspnet": (53.3, 1513, 56.6, 6289),
    "segnet": (60.8, 1139, 61.2, 10339),
    "deeplabv3plus": (63.1, 1279, 63.5, 3199),
    "fcn8s": (64.3, 1963, 70.1, 5227),
}
# Global-local models: (mIoU %, MB) of the full model.
PAPER_GLOBAL_LOCAL = {
    "glnet": (71.6, 1865),  # G<->L; the G->L model is 70.9 % at 1395 MB
    "glcanet": (73.4, 1766),
}

# Speed tables: model -> list of rows (input side, params M, GFLOPs as printed, FPS, GPU, source).
PAPER_SPEED = {
    "ammunet": [(512, 32.35, 52.50, 64.10, "RTX 3090", "AMMUNet paper, Table III (UNetFormer + GMSA + AMMM, R50)")],
    "hiresnet": [
        (512, 26.0, 57.0, 131.0, "GTX 3090", "Hi-ResNet paper, Table XIV (Vaihingen)"),
        (512, 26.0, 57.0, 123.0, "GTX 3090", "Hi-ResNet paper, Table XIII (Potsdam)"),
        (1024, 26.0, 402.0, 35.0, "GTX 3090", "Hi-ResNet paper, Tables X and XII (LoveDA; 2116 MB)"),
    ],
}
