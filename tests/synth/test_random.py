"""rsinfer.synth.random: draws fixed by their keys alone, hashes by the global pixel alone."""

import numpy as np

from rsinfer.synth.random import Stream, choose, hash2, salt_for


def draws(stream, n=200):
    return [stream.random() for _ in range(n)]


def test_a_stream_is_fixed_by_its_keys_across_batches():
    # 200 draws span several of the stream's internal batches of 64.
    assert draws(Stream(3, 1, -1, 7)) == draws(Stream(3, 1, -1, 7))
    assert draws(Stream(3, 1, -1, 7)) != draws(Stream(3, 1, 1, 7))  # negative keys are keys of their own
    assert draws(Stream(3, 1, 0)) != draws(Stream(3, 2, 0))  # salts keep kinds of object apart


def test_stream_distributions_stay_in_range():
    r = Stream(0, 0)
    assert all(5 <= r.integers(5, 9) < 9 for _ in range(500))
    assert all(-2.0 <= r.uniform(-2.0, 3.0) < 3.0 for _ in range(500))
    assert all(0 <= choose(r, 4, (0.1, 0.0, 0.6, 0.3)) < 4 for _ in range(500))
    picks = {choose(r, 3, (0.0, 1.0, 0.0)) for _ in range(100)}
    assert picks == {1}


def test_hash2_depends_only_on_the_pixel_not_the_window():
    salt = salt_for(5, 4)
    rows = np.arange(100, 140, dtype=np.uint32)[:, None]
    cols = np.arange(7, 60, dtype=np.uint32)[None, :]
    whole = hash2(rows, cols, salt)
    assert whole.shape == (40, 53) and whole.dtype == np.uint32
    np.testing.assert_array_equal(hash2(rows[13:20], cols[:, 31:], salt), whole[13:20, 31:])
    assert (hash2(rows, cols, salt_for(6, 4)) != whole).mean() > 0.99
