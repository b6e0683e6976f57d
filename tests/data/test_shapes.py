"""Tests for the synthetic shapes dataset (onegan_tf/data/shapes.py)."""

import numpy as np
import pytest
import tensorflow as tf
from class_separability import nearest_centroid_accuracy

from onegan_tf.data import shapes

SEED = 7


def _render(start, count, size=32, seed=SEED, **kwargs):
    indices = tf.range(start, start + count, dtype=tf.int64)
    return {
        k: v.numpy()
        for k, v in shapes.render_objects(indices, seed=seed, image_size=size, **kwargs).items()
    }


@pytest.fixture(scope="module")
def many():
    """480 object scenes at 32 px (shared by the statistics tests)."""
    return _render(0, 480)


@pytest.mark.parametrize("size", [16, 64])
def test_shapes_dtypes_and_ranges(size):
    out = shapes.render_objects(tf.range(6, dtype=tf.int64), seed=SEED, image_size=size)
    assert out["image"].shape == (6, size, size, 3) and out["image"].dtype == tf.float32
    assert out["background"].shape == (6, size, size, 3)
    assert out["mask"].shape == (6, size, size, 1) and out["mask"].dtype == tf.float32
    assert out["parent"].shape == (6,) and out["parent"].dtype == tf.int32
    assert out["child"].shape == (6,) and out["child"].dtype == tf.int32
    for key in ("image", "background"):
        assert float(tf.reduce_min(out[key])) >= -1.0 and float(tf.reduce_max(out[key])) <= 1.0
    bgs = shapes.render_backgrounds(tf.range(5, dtype=tf.int64), seed=SEED, image_size=size)
    assert bgs.shape == (5, size, size, 3) and bgs.dtype == tf.float32
    assert float(tf.reduce_min(bgs)) >= -1.0 and float(tf.reduce_max(bgs)) <= 1.0


def _assert_same(actual, expected):
    """Ids and masks must match exactly; colours up to float32 rounding (SIMD vs scalar code paths
    and graph rewrites may change the last bit depending on batch size and eager/graph mode)."""
    if isinstance(actual, dict):
        assert actual.keys() == expected.keys()
        for key in actual:
            _assert_same(actual[key], expected[key])
    elif np.issubdtype(np.asarray(actual).dtype, np.integer) or actual.shape[-1] == 1:
        np.testing.assert_array_equal(actual, expected)
    else:
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)


def test_deterministic_and_independent_of_batch():
    full = _render(0, 8)
    for key, value in _render(0, 8).items():
        np.testing.assert_array_equal(value, full[key])  # same call: bit-identical
    part = _render(3, 2)
    _assert_same(part, {k: v[3:5] for k, v in full.items()})
    bg_full = shapes.render_backgrounds(tf.range(8, dtype=tf.int64), seed=SEED, image_size=32)
    bg_part = shapes.render_backgrounds(tf.constant([5], tf.int64), seed=SEED, image_size=32)
    _assert_same(bg_part.numpy()[0], bg_full.numpy()[5])


def test_seeds_and_streams_differ():
    a, b = _render(0, 8, seed=1), _render(0, 8, seed=2)
    assert np.abs(a["image"] - b["image"]).mean() > 0.05
    # The clean-background stream is not the objects' backgrounds for the same indices.
    bgs = shapes.render_backgrounds(tf.range(8, dtype=tf.int64), seed=1, image_size=32).numpy()
    assert np.abs(bgs - a["background"]).mean(axis=(1, 2, 3)).min() > 0.01


def test_masks_binary_and_area_in_bounds(many):
    mask = many["mask"]
    assert set(np.unique(mask)) <= {0.0, 1.0}
    area = mask.mean(axis=(1, 2, 3))
    assert area.min() > 0.03 and area.max() < 0.45
    assert np.mean((area >= 0.08) & (area <= 0.40)) > 0.9


def test_every_parent_and_child_appears(many):
    parent, child = many["parent"][:240], many["child"][:240]
    assert set(parent) == set(range(4))
    assert set(child) == set(range(12))
    np.testing.assert_array_equal(child // 3, parent)


def test_all_parents_and_children_supported():
    out = _render(0, 200, size=16, num_parents=6, children_per_parent=4)
    assert set(out["parent"]) == set(range(6)) and set(out["child"]) == set(range(24))
    with pytest.raises(ValueError):
        shapes.render_objects(tf.range(2, dtype=tf.int64), seed=0, image_size=16, num_parents=7)


def test_image_equals_background_outside_object(many):
    image, bg, mask = many["image"], many["background"], many["mask"]
    # Antialiasing touches pixels just outside the binary mask (up to ~1.5 px at sharp corners);
    # two pixels away the image must be exactly the background.
    near = tf.nn.max_pool2d(mask, 5, 1, "SAME").numpy()
    np.testing.assert_array_equal(image[near[..., 0] == 0], bg[near[..., 0] == 0])
    inside = np.abs(image - bg).mean(-1, keepdims=True)
    per_image = (inside * mask).sum(axis=(1, 2, 3)) / mask.sum(axis=(1, 2, 3))
    assert per_image.min() > 0.1


def _radial_histogram(mask):
    """Rotation/scale/translation-invariant silhouette feature: histogram of pixel distances to
    the centroid, in units of sqrt(area)."""
    ys, xs = np.nonzero(mask)
    r = np.hypot(ys - ys.mean(), xs - xs.mean()) / np.sqrt(len(xs))
    hist, _ = np.histogram(r, bins=10, range=(0.0, 1.0))
    return hist / len(xs)


def test_parents_have_distinct_silhouettes():
    out = _render(1000, 400, size=64, num_parents=6)
    features = np.stack([_radial_histogram(m[..., 0]) for m in out["mask"]])
    assert nearest_centroid_accuracy(features, out["parent"]) > 0.85


def test_children_have_distinct_colours(many):
    mask = many["mask"]
    obj = (many["image"] + 1) / 2
    n = mask.sum(axis=(1, 2))
    mean = (obj * mask).sum(axis=(1, 2)) / n
    std = np.sqrt(((obj - mean[:, None, None]) ** 2 * mask).sum(axis=(1, 2)) / n)
    features = np.concatenate([mean, std], axis=1)
    assert nearest_centroid_accuracy(features, many["child"]) > 0.9


def test_backgrounds_follow_the_parent_in_hue_only_and_are_muted(many):
    hsv = tf.image.rgb_to_hsv((many["background"] + 1) / 2).numpy()
    angle = 2 * np.pi * hsv[..., 0]
    weight = hsv[..., 1]
    hue = np.stack([(np.cos(angle) * weight).mean((1, 2)), (np.sin(angle) * weight).mean((1, 2))],
                   1)
    assert nearest_centroid_accuracy(hue, many["parent"]) > 0.9
    # Neither the brightness nor the layout (the mean of each image half) says much about the
    # parent (chance is 1/4): only the hue does.
    value = hsv[..., 2]
    layout = np.stack([value[:, :16].mean((1, 2)), value[:, 16:].mean((1, 2)),
                       value[:, :, :16].mean((1, 2)), value[:, :, 16:].mean((1, 2))], 1)
    assert nearest_centroid_accuracy(layout, many["parent"]) < 0.4
    # Objects are saturated, backgrounds muted: mean HSV saturation differs clearly.
    sat = tf.image.rgb_to_hsv((many["image"] + 1) / 2).numpy()[..., 1]
    fg = many["mask"][..., 0] == 1
    assert sat[fg].mean() > sat[~fg].mean() + 0.2


def test_background_ripples_follow_the_parent(many):
    """The ripples' orientation (from the structure tensor of the high-passed luminance)
    identifies the parent."""
    value = tf.image.rgb_to_hsv((many["background"] + 1) / 2).numpy()[..., 2]
    blurred = tf.nn.avg_pool2d(value[..., None], 5, 1, "SAME").numpy()[..., 0]
    fine = (value - blurred)[:, 4:-4, 4:-4]
    gy, gx = np.gradient(fine, axis=(1, 2))
    jxx, jyy, jxy = (gx * gx).mean((1, 2)), (gy * gy).mean((1, 2)), (gx * gy).mean((1, 2))
    orientation = np.stack([jxx - jyy, 2 * jxy], 1) / (jxx + jyy)[:, None]
    assert nearest_centroid_accuracy(orientation, many["parent"]) > 0.9


def test_kmeans_on_pixels_does_not_cluster_the_classes(many):
    """The trivial clustering baseline stays far below what a model that finds the objects
    reaches, so the evaluation's ACC / NMI mean something."""
    from onegan_tf.evaluation import metrics

    pixels = many["image"].reshape(len(many["image"]), -1)
    for level, k in (("parent", 4), ("child", 12)):
        clusters = metrics.kmeans_labels(pixels, k, seed=0)
        assert metrics.normalized_mutual_information(many[level], clusters) < 0.6, level
        assert metrics.clustering_accuracy(many[level], clusters) < 0.6, level


def test_object_dataset_resumes_and_counts():
    ds = shapes.object_dataset(seed=SEED, image_size=16, batch_size=4, start_index=8)
    first = next(iter(ds))
    direct = shapes.render_objects(tf.range(8, 12, dtype=tf.int64), seed=SEED, image_size=16)
    _assert_same(
        {k: v.numpy() for k, v in first.items()}, {k: v.numpy() for k, v in direct.items()}
    )
    finite = shapes.object_dataset(seed=SEED, image_size=16, batch_size=4, num_examples=10)
    assert [int(b["image"].shape[0]) for b in finite] == [4, 4, 2]


def test_background_dataset_matches_render():
    ds = shapes.background_dataset(seed=SEED, image_size=16, batch_size=4, start_index=3)
    batches = list(ds.take(2))
    assert all(b.shape == (4, 16, 16, 3) for b in batches)
    direct = shapes.render_backgrounds(tf.range(7, 11, dtype=tf.int64), seed=SEED, image_size=16)
    _assert_same(batches[1].numpy(), direct.numpy())
