"""Tests for onegan_tf/data/images.py: boxes (sorted, clipped, largest, union), the square object
crop around a box and the background windows beside it, on hand-made images."""

import numpy as np
import tensorflow as tf

from onegan_tf.data import images

RED = (250, 0, 0)


def test_box_pixels_are_sorted_and_clipped():
    box = images.normalized_box_to_pixels(tf.constant([0.8, -0.2, 0.1, 1.3]), 100, 50)
    np.testing.assert_array_equal(box.numpy(), [10, 0, 80, 50])
    assert not images.box_is_valid(images.normalized_box_to_pixels([0.5, 0.5, 0.5, 0.9], 10, 10))
    boxes = tf.constant([[0.0, 0.0, 0.1, 0.1], [0.9, 0.2, 0.3, 0.8]])
    np.testing.assert_allclose(images.largest_box(boxes).numpy(), [0.9, 0.2, 0.3, 0.8])
    np.testing.assert_allclose(images.union_box(boxes).numpy(), [0.0, 0.0, 0.9, 0.8])


def test_object_crop_of_a_known_box():
    image = np.full((200, 300, 3), 20, np.uint8)
    image[80:120, 100:160] = RED  # 40 x 60 box -> 90 px square around its centre (100, 130)
    box = images.normalized_box_to_pixels([80 / 200, 100 / 300, 120 / 200, 160 / 300], 200, 300)
    window = images.object_window(box, 200, 300).numpy()
    np.testing.assert_array_equal(window, [55, 85, 90])
    crop = images.crop_square(tf.constant(image), window).numpy()
    expected = np.zeros((90, 90), bool)
    expected[25:65, 15:75] = True
    np.testing.assert_array_equal(np.all(crop == RED, axis=-1), expected)
    resized = images.resize_uint8(crop, 30).numpy()
    assert resized.shape == (30, 30, 3) and np.all(resized[15, 15] == RED)


def test_object_crop_at_the_border_shifts_then_repeats_edges():
    image = np.zeros((40, 100, 3), np.uint8)
    image[:, :, 1] = np.arange(100)[None, :]  # green = column index
    image[:, :, 0] = np.arange(40)[:, None]  # red = row index
    # A box at the left edge: the square shifts right to stay inside along x.
    box = images.normalized_box_to_pixels([0.25, 0.0, 0.75, 0.2], 40, 100)
    y0, x0, side = images.object_window(box, 40, 100).numpy()
    assert (x0, side) == (0, 30) and 0 <= y0 <= 10
    # A box taller than 2/3 of the image: the side exceeds the height -> edge rows repeat.
    box = images.normalized_box_to_pixels([0.0, 0.4, 1.0, 0.6], 40, 100)
    window = images.object_window(box, 40, 100).numpy()
    assert window[2] == 60 and window[0] == -10
    crop = images.crop_square(tf.constant(image), window).numpy()
    assert crop.shape == (60, 60, 3)
    np.testing.assert_array_equal(crop[:10, :, 0], 0)  # rows above the image repeat row 0
    np.testing.assert_array_equal(crop[-10:, :, 0], 39)
    np.testing.assert_array_equal(crop[0, :, 1], np.arange(window[1], window[1] + 60))


def test_background_windows_avoid_the_box():
    rng = np.random.default_rng(0)
    total = 0
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(20, 300, 2))
        box = images.normalized_box_to_pixels(rng.uniform(-0.1, 1.1, 4).astype(np.float32), h, w)
        y0, x0, y1, x1 = box.numpy()
        windows = images.background_windows(box, h, w, min_side=8).numpy()
        total += len(windows)
        for top, left, side in windows:
            assert side >= 8 and top >= 0 and left >= 0 and top + side <= h and left + side <= w
            disjoint = (top + side <= y0 or top >= y1 or left + side <= x0 or left >= x1)
            assert disjoint, (h, w, box.numpy(), (top, left, side))
    assert total > 300
    # The rule on a known layout: a box in the right part of a 100 x 300 image leaves a
    # 100 x 150 strip on its left: one 100 px square there (centred), nothing above or below.
    box = tf.constant([0.0, 150.0, 100.0, 300.0])
    windows = images.background_windows(box, 100, 300, min_side=20).numpy()
    np.testing.assert_array_equal(windows, [[0, 25, 100]])
    # A tightly cropped object leaves nothing large enough.
    box = tf.constant([5.0, 5.0, 95.0, 95.0])
    assert len(images.background_windows(box, 100, 100, min_side=20).numpy()) == 0
