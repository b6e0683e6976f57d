"""Tests for onegan_tf/nets/generators.py: the composite (Eq. 5) and the generator networks'
configs."""

import keras
import numpy as np
import tensorflow as tf
from scipy.special import logit

from onegan_tf.nets import generators

B = 3


def test_compose_formula_exact():
    rng = np.random.default_rng(1)
    bg = rng.uniform(-1, 1, (2, 4, 4, 3)).astype(np.float32)
    fg = rng.uniform(-1, 1, (2, 4, 4, 3)).astype(np.float32)
    mask = rng.uniform(0, 1, (2, 4, 4, 1)).astype(np.float32)
    compose = lambda b, f, m: np.asarray(  # noqa: E731
        generators.compose(tf.constant(b), tf.constant(f), tf.constant(m)))
    np.testing.assert_allclose(compose(bg, fg, mask), bg * (1 - mask) + fg * mask, atol=1e-7)
    np.testing.assert_array_equal(compose(bg, fg, np.zeros_like(mask)), bg)
    np.testing.assert_array_equal(compose(bg, fg, np.ones_like(mask)), fg)


def test_generator_configs_round_trip(tiny_model, tiny_config, rebuild_from_config):
    cfg, ae = tiny_config, tiny_model.autoencoder
    codes = [tf.ones((B, cfg.code_dim)), tf.ones((B, cfg.z_dim))]
    pre = ae.foreground_pre(codes)
    features = ae.shape_generator([pre, codes[0]])
    cases = [
        (ae.background_pre, codes), (ae.foreground_pre, codes),
        (ae.background_generator, pre), (ae.shape_generator, [pre, codes[0]]),
        (ae.appearance_generator, [features, codes[0]]),
    ]
    for net, inputs in cases:
        clone = rebuild_from_config(net, inputs)
        assert clone.get_config() == net.get_config(), net.name


def _uniform_to_z(a):
    """The z whose normal CDF gives a in (-1, 1) through pose_transforms' mapping."""
    from scipy.special import erfinv
    return np.sqrt(2.0) * erfinv(np.asarray(a, np.float64))


def _pose(a, size=32, rotation=180.0, scale=2.0, shift=0.25):
    z = np.zeros((1, 8), np.float32)
    z[0, :4] = _uniform_to_z(a)
    return generators.pose_transforms(tf.constant(z), size, rotation, scale, shift)


def _moved(image, a, **kwargs):
    return np.asarray(generators.apply_pose(tf.constant(image[None]), _pose(a, **kwargs)))[0]


def test_pose_zero_noise_is_the_identity():
    image = np.random.default_rng(0).uniform(0, 1, (32, 32, 2)).astype(np.float32)
    np.testing.assert_array_equal(_moved(image, [0, 0, 0, 0]), image)


def test_pose_turns_scales_and_shifts_about_the_centre():
    bar = np.zeros((32, 32, 1), np.float32)
    bar[14:18, 6:26] = 1.0  # horizontal bar through the centre, 4 x 20 pixels
    # a0 = 0.5 of 180 degrees: a quarter turn, the bar becomes vertical and stays centred.
    turned = _moved(bar, [0.5, 0, 0, 0])[..., 0] > 0.5
    rows, cols = np.nonzero(turned)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (6, 25, 14, 17)
    # a2 = 0.5 of 0.25 * 32 pixels: 4 pixels to the right; a3 = -0.5: 4 pixels up.
    rows, cols = np.nonzero(_moved(bar, [0, 0, 0.5, -0.5])[..., 0] > 0.5)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (10, 13, 10, 29)
    # a1 = 0.5 of scale 4: twice as large about the centre, the area four times.
    block = np.zeros((32, 32, 1), np.float32)
    block[14:18, 12:20] = 1.0
    doubled = _moved(block, [0, 0.5, 0, 0], scale=4.0)[..., 0]
    np.testing.assert_allclose(doubled.sum(), 4 * block.sum(), rtol=0.02)
    rows, cols = np.nonzero(doubled > 0.5)
    assert (rows.min(), rows.max()) == (12, 19)


def test_pose_gradient_reaches_the_moved_layer():
    image = tf.Variable(np.random.default_rng(1).uniform(0, 1, (1, 32, 32, 1)), dtype=tf.float32)
    with tf.GradientTape() as tape:
        moved = generators.apply_pose(image, _pose([0.3, 0.2, 0.1, -0.1]))
        loss = tf.reduce_sum(moved * tf.linspace(0.0, 1.0, 32)[None, :, None, None])
    grad = tape.gradient(loss, image)
    assert grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 1.0


def test_pose_warp_matches_the_keras_affine_transform():
    # The gather-based warp samples exactly as keras.ops.image.affine_transform (bilinear,
    # constant 0 outside), for poses that push parts of the image out and read outside.
    rng = np.random.default_rng(3)
    images = tf.constant(rng.uniform(-1, 1, (6, 16, 16, 4)), tf.float32)
    z = tf.constant(rng.normal(0, 1.5, (6, 8)), tf.float32)
    transforms = generators.pose_transforms(z, 16, 180.0, 1.6, 0.3)
    expected = keras.ops.image.affine_transform(images, transforms, interpolation="bilinear",
                                                fill_mode="constant", fill_value=0.0)
    moved = generators.apply_pose(images, transforms)
    np.testing.assert_allclose(np.asarray(moved), np.asarray(expected), atol=1e-5)
    assert float(np.mean(np.asarray(moved) == 0.0)) > 0.01  # some pixels read outside


def test_pose_warp_compiles_with_xla():
    images = tf.constant(np.random.default_rng(4).uniform(0, 1, (2, 16, 16, 3)), tf.float32)
    transforms = generators.pose_transforms(tf.ones((2, 8)), 16, 90.0, 1.5, 0.2)
    compiled = tf.function(generators.apply_pose, jit_compile=True)
    np.testing.assert_allclose(np.asarray(compiled(images, transforms)),
                               np.asarray(generators.apply_pose(images, transforms)), atol=1e-5)


def _largest_step(maps):
    """The largest difference between horizontally or vertically adjacent pixels."""
    maps = np.asarray(maps)
    return max(np.abs(np.diff(maps, axis=1)).max(), np.abs(np.diff(maps, axis=2)).max())


def test_coarse_logits_keep_the_outline_and_drop_fine_parts():
    # Stripes one or two pixels wide (the streaks of a failed Phase I) average away.
    stripes = np.where(np.arange(16) % 4 < 2, 5.0, -5.0)
    for pattern in (np.tile(stripes, (16, 1)), np.tile(stripes[:, None], (1, 16))):
        coarse = generators.coarse_logits(tf.constant(pattern[None, :, :, None], tf.float32), 4)
        np.testing.assert_allclose(np.asarray(coarse), 0.0, atol=1e-5)
    # A solid object (a disc covering a quarter of a 32 px image) keeps its place and size.
    yy, xx = np.mgrid[:32, :32]
    disc = np.where((yy - 13.5) ** 2 + (xx - 17.5) ** 2 < 81, 4.0, -4.0)
    coarse = np.asarray(generators.coarse_logits(tf.constant(disc[None, :, :, None],
                                                             tf.float32), 4))[0, :, :, 0]
    inside, truth = coarse > 0, disc > 0
    assert (inside & truth).sum() / (inside | truth).sum() > 0.9
    # Bilinear between cell means: neighbours differ by at most a cell step over the divisor.
    logits = tf.constant(np.random.default_rng(5).normal(0, 3, (2, 16, 16, 1)), tf.float32)
    cells = np.asarray(tf.nn.avg_pool2d(logits, 4, 4, "VALID"))
    assert _largest_step(generators.coarse_logits(logits, 4)) <= _largest_step(cells) / 4 + 1e-5


def test_coarse_masks_in_the_appearance_generator():
    features = tf.constant(np.random.default_rng(6).normal(0, 1, (B, 32, 32, 8)), tf.float32)
    code = tf.ones((B, 4))
    fine = generators.AppearanceGenerator(8, 32, name="fine")
    coarse = generators.AppearanceGenerator(8, 32, mask_divisor=4, name="coarse")
    fine([features, code]), coarse([features, code])
    coarse.set_weights(fine.get_weights())  # same weights: only the coarsening differs
    with tf.GradientTape() as tape:
        _, mask = coarse([features, code])
        loss = tf.reduce_sum(mask)
    _, fine_mask = fine([features, code])
    assert _largest_step(logit(mask)) < 0.5 * _largest_step(logit(fine_mask))
    np.testing.assert_allclose(  # the per-pixel logits, coarsened
        logit(mask), np.asarray(generators.coarse_logits(tf.constant(logit(fine_mask)), 4)),
        atol=1e-3)
    grad = tape.gradient(loss, coarse.to_mask.kernel)
    assert grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 0
    assert coarse.get_config()["mask_divisor"] == 4
    assert generators.AppearanceGenerator.from_config(coarse.get_config()).mask_divisor == 4
