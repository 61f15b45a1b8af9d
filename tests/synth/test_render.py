"""rsinfer.synth.render: a window is a pure function of the pixels it covers."""

from itertools import pairwise

import numpy as np

from rsinfer.models.config import ISPRS_CLASSES
from rsinfer.synth.layout import City
from rsinfer.synth.render import render_window


def test_a_pixel_is_the_same_whichever_window_draws_it():
    """Stitching windows cut at odd places gives the single big window, bit for bit."""
    whole_rgb, whole_label = render_window(City(9, 0.2), 40, 30, 300, 700)
    rgb = np.empty_like(whole_rgb)
    label = np.empty_like(whole_label)
    rows, cols = (0, 137, 300), (0, 233, 511, 700)
    for r0, r1 in pairwise(rows):
        for c0, c1 in pairwise(cols):
            # A fresh city each time: cold plan caches must not matter either.
            part_rgb, part_label = render_window(City(9, 0.2), 40 + r0, 30 + c0, r1 - r0, c1 - c0)
            rgb[:, r0:r1, c0:c1] = part_rgb
            label[r0:r1, c0:c1] = part_label
    np.testing.assert_array_equal(rgb, whole_rgb)
    np.testing.assert_array_equal(label, whole_label)


def test_a_window_is_uint8_rgb_and_class_labels():
    rgb, label = render_window(City(1, 0.3), 0, 0, 64, 96)
    assert rgb.shape == (3, 64, 96) and rgb.dtype == np.uint8
    assert label.shape == (64, 96) and label.dtype == np.uint8
    assert label.max() < len(ISPRS_CLASSES)
