"""Each loss of onegan_tf/training/losses.py against a hand-computed numpy value on tiny inputs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from onegan_tf.nets.autoencoder import tree_parent_probabilities
from onegan_tf.training import losses

RNG = np.random.default_rng(3)


def _softplus(x):
    return np.log1p(np.exp(x))


def _value(t):
    value = np.asarray(t)
    assert value.shape == () and value.dtype == np.float32
    return float(value)


def test_discriminator_loss():
    real = np.array([2.0, -1.0, 0.5], np.float32)
    fake = np.array([[-3.0, 0.0], [1.0, 4.0]], np.float32)  # patch logits: any shape
    expected = np.mean(_softplus(-real)) + np.mean(_softplus(fake))
    assert _value(losses.discriminator_loss(real, fake)) == pytest.approx(expected, rel=1e-6)
    # A perfect discriminator has (almost) zero loss; a fooled one a large loss.
    assert _value(losses.discriminator_loss(np.full(2, 30.0), np.full(2, -30.0))) < 1e-12
    assert _value(losses.discriminator_loss(np.full(2, -30.0), np.full(2, 30.0))) > 59


def test_discriminator_loss_equals_binary_cross_entropy():
    real = RNG.standard_normal(5).astype(np.float32)
    fake = RNG.standard_normal(5).astype(np.float32)
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    expected = float(bce(np.ones(5), real)) + float(bce(np.zeros(5), fake))
    assert _value(losses.discriminator_loss(real, fake)) == pytest.approx(expected, rel=1e-5)


def test_generator_loss_is_non_saturating():
    fake = np.array([[-2.0], [0.0], [3.0]], np.float32)
    assert _value(losses.generator_loss(fake)) == pytest.approx(np.mean(_softplus(-fake)),
                                                                rel=1e-6)
    assert _value(losses.generator_loss(np.zeros(4, np.float32))) == pytest.approx(np.log(2))
    # Non-saturating: the gradient stays large when D confidently rejects the fakes.
    logits = tf.constant([-20.0])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = losses.generator_loss(logits)
    assert float(tape.gradient(loss, logits)[0]) == pytest.approx(-1.0, abs=1e-6)


def test_losses_are_float32_for_half_inputs():
    logits = tf.constant([1.0, -2.0], tf.float16)
    assert losses.generator_loss(logits).dtype == tf.float32
    assert losses.discriminator_loss(logits, logits).dtype == tf.float32
    assert losses.mean_absolute_error(logits, tf.zeros(2, tf.bfloat16)).dtype == tf.float32


def test_cross_entropy():
    logits = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], np.float32)
    labels = np.array([1, 0])
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.mean(log_softmax[np.arange(2), labels])
    assert _value(losses.cross_entropy(logits, labels)) == pytest.approx(expected, rel=1e-6)
    # Stable for large logits; equals the Keras sparse CE.
    big = np.array([[1000.0, 0.0], [0.0, 1000.0]], np.float32)
    assert _value(losses.cross_entropy(big, np.array([0, 0]))) == pytest.approx(500.0)
    keras_ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert _value(losses.cross_entropy(logits, labels)) == pytest.approx(
        float(keras_ce(labels, logits)), rel=1e-5)
    assert _value(losses.cross_entropy(logits, tf.constant(labels, tf.int64))) == pytest.approx(
        expected, rel=1e-6)


def test_soft_cross_entropy_and_tree_parent_probabilities():
    logits = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], np.float32)
    targets = np.array([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]], np.float32)
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.mean((targets * log_softmax).sum(-1))
    assert _value(losses.soft_cross_entropy(logits, targets)) == pytest.approx(expected, rel=1e-6)
    one_hot = np.eye(3, dtype=np.float32)[[1, 0]]  # a one-hot target is the sparse CE
    assert _value(losses.soft_cross_entropy(logits, one_hot)) == pytest.approx(
        _value(losses.cross_entropy(logits, np.array([1, 0]))), rel=1e-6)
    # 6 children, 2 parents: children 0-2 belong to parent 0, 3-5 to parent 1 (c * N_P // N_C).
    child_logits = RNG.normal(size=(4, 6)).astype(np.float32)
    child_probs = np.exp(child_logits) / np.exp(child_logits).sum(-1, keepdims=True)
    tree = np.asarray(tree_parent_probabilities(child_probs, 2))
    assert tree.shape == (4, 2)
    np.testing.assert_allclose(tree[:, 0], child_probs[:, :3].sum(-1), rtol=1e-5)
    np.testing.assert_allclose(tree[:, 1], child_probs[:, 3:].sum(-1), rtol=1e-5)
    # 5 children, 2 parents (N_C not a multiple of N_P): 0-2 -> parent 0, 3-4 -> parent 1.
    five = RNG.normal(size=(3, 5)).astype(np.float32)
    five_probs = np.exp(five) / np.exp(five).sum(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(tree_parent_probabilities(five_probs, 2)),
                               np.stack([five_probs[:, :3].sum(-1), five_probs[:, 3:].sum(-1)],
                                        axis=1), rtol=1e-5)
    # 12 children, 4 parents, all mass on child 7: parent 2.
    peaked = np.full((1, 12), -1e4, np.float32)
    peaked[0, 7] = 0.0
    np.testing.assert_allclose(np.asarray(tree_parent_probabilities(tf.nn.softmax(peaked), 4)),
                               [[0.0, 0.0, 1.0, 0.0]], atol=1e-6)


def test_mean_squared_and_absolute_error():
    target = np.array([[1.0, -2.0], [0.5, 0.0]], np.float32)
    prediction = np.array([[0.0, -1.0], [0.5, 2.0]], np.float32)
    assert _value(losses.mean_squared_error(target, prediction)) == pytest.approx(
        (1 + 1 + 0 + 4) / 4)
    assert _value(losses.mean_absolute_error(target, prediction)) == pytest.approx(
        (1 + 1 + 0 + 2) / 4)
    images = RNG.uniform(-1, 1, (2, 3, 3, 3)).astype(np.float32)
    assert _value(losses.mean_absolute_error(images, images)) == 0.0


def _kl(mean, log_var, target):
    """KL(N(m, e^lv) || N(t, 1)) per dimension, averaged."""
    return np.mean(0.5 * (np.exp(log_var) + (mean - target) ** 2 - 1.0 - log_var))


def test_gaussian_kl():
    mean = RNG.standard_normal((3, 4)).astype(np.float32)
    log_var = RNG.standard_normal((3, 4)).astype(np.float32) * 0.5
    target = RNG.standard_normal((3, 4)).astype(np.float32)
    assert _value(losses.gaussian_kl(mean, log_var, target)) == pytest.approx(
        _kl(mean, log_var, target), rel=1e-5)
    assert _value(losses.gaussian_kl(mean, log_var)) == pytest.approx(
        _kl(mean, log_var, 0.0), rel=1e-5)
    # Zero exactly when mean = target and log_var = 0, positive otherwise.
    assert _value(losses.gaussian_kl(target, np.zeros_like(target), target)) == 0.0
    assert _value(losses.gaussian_kl(np.zeros((2, 3)), np.zeros((2, 3)))) == 0.0
    assert _value(losses.gaussian_kl(target, np.full_like(target, 0.3), target)) > 0.0
    # Hand value: one dimension, mean 1, log_var 0, target 0 -> 0.5.
    assert _value(losses.gaussian_kl(np.ones((1, 1)), np.zeros((1, 1)))) == pytest.approx(0.5)
    # As Eq. 15 writes it (summed over the 4 dimensions): 4 times the per-dimension value.
    assert _value(losses.gaussian_kl(mean, log_var, target, per_dimension=False)) == (
        pytest.approx(4 * _kl(mean, log_var, target), rel=1e-5))


def test_code_regularizer():
    a = np.array([[1.0, 2.0], [3.0, 0.0]], np.float32)
    b = np.array([[0.5, -0.5, 1.0]], np.float32)
    expected = np.mean(a**2) + np.mean(b**2)
    assert _value(losses.code_regularizer(a, b)) == pytest.approx(expected)
    assert _value(losses.code_regularizer(a)) == pytest.approx(np.mean(a**2))


def test_mask_regularizer_binarisation_part():
    # Binary masks with area inside [0.1, 0.9]: zero loss.
    mask = np.zeros((2, 4, 4, 1), np.float32)
    mask[0, :2] = 1.0  # area 0.5
    mask[1, :, :1] = 1.0  # area 0.25
    assert _value(losses.mask_regularizer(mask, 0.1, 0.9)) == 0.0
    # Soft values are penalised by min(m, 1 - m); 0.5 everywhere (area 0.5: no hinge) -> 0.5.
    assert _value(losses.mask_regularizer(np.full((1, 2, 2, 1), 0.5), 0.1, 0.9)) == 0.5
    soft = RNG.uniform(0.3, 0.7, (2, 3, 3, 1)).astype(np.float32)
    assert _value(losses.mask_regularizer(soft, 0.0, 1.0)) == pytest.approx(
        np.mean(np.minimum(soft, 1 - soft)), rel=1e-6)


def test_mask_regularizer_area_hinge():
    empty = np.zeros((1, 4, 4, 1), np.float32)  # area 0 < 0.1
    full = np.ones((1, 4, 4, 1), np.float32)  # area 1 > 0.9
    assert _value(losses.mask_regularizer(empty, 0.1, 0.9)) == pytest.approx(0.1)
    assert _value(losses.mask_regularizer(full, 0.1, 0.9)) == pytest.approx(0.1)
    assert _value(losses.mask_regularizer(full, 0.1, 0.75)) == pytest.approx(0.25)
    # The hinge is per example, then averaged: one empty + one fine mask -> 0.1 / 2.
    fine = np.zeros((1, 4, 4, 1), np.float32)
    fine[0, :2] = 1.0
    both = np.concatenate([empty, fine])
    assert _value(losses.mask_regularizer(both, 0.1, 0.9)) == pytest.approx(0.05)
    # Both parts add up.
    mixed = RNG.uniform(0.0, 0.15, (3, 4, 4, 1)).astype(np.float32)
    area = mixed.mean(axis=(1, 2, 3))
    expected = (np.mean(np.minimum(mixed, 1 - mixed))
                + np.mean(np.maximum(0.2 - area, 0) + np.maximum(area - 0.8, 0)))
    assert _value(losses.mask_regularizer(mixed, 0.2, 0.8)) == pytest.approx(expected, rel=1e-5)


def test_mask_regularizer_mean_area_hinge():
    # Two binary masks of areas 0.5 and 0.25, both inside [0.1, 0.9]: no per-mask hinge.
    masks = np.zeros((2, 4, 4, 1), np.float32)
    masks[0, :2] = 1.0
    masks[1, :1] = 1.0
    assert _value(losses.mask_regularizer(masks, 0.1, 0.9)) == 0.0
    # Their mean area 0.375 against a cap of 0.3: 0.075; 1: off.
    assert _value(losses.mask_regularizer(masks, 0.1, 0.9, 0.3)) == pytest.approx(0.075)
    assert _value(losses.mask_regularizer(masks, 0.1, 0.9, 1.0)) == 0.0
    # The cap is on the batch's mean, not on each mask: the 0.5 mask, above a cap of 0.4,
    # costs nothing while the mean is below it.
    assert _value(losses.mask_regularizer(masks, 0.1, 0.9, 0.4)) == 0.0
    # Its gradient is the same on every pixel of every mask: 1 / (pixels in the batch).
    tensor = tf.constant(masks)
    with tf.GradientTape() as tape:
        tape.watch(tensor)
        loss = losses.mask_regularizer(tensor, 0.0, 1.0, 0.3)
    grad = tape.gradient(loss, tensor).numpy()
    binarize = np.where(masks < 0.5, 1.0, -1.0) / masks.size  # d mean(min(m, 1 - m))
    np.testing.assert_allclose(grad - binarize, np.full_like(masks, 1.0 / masks.size),
                               rtol=1e-5)


def test_mask_boundary_length():
    # An 8x8 image with a solid 4x4 square: 2 jumps per row and per column over 4 rows and 4
    # columns = 16, over the side 8 = 2 = 4 sqrt(area 1/4).
    square = np.zeros((1, 8, 8, 1), np.float32)
    square[0, 2:6, 2:6] = 1.0
    assert _value(losses.mask_boundary_length(square)) == pytest.approx(2.0)
    # The same area as four one-pixel-wide vertical streaks, the first on the image border:
    # (7 jumps in each of 4 rows + 2 ends of each streak) / 8 = 4.5.
    streaks = np.zeros((1, 8, 8, 1), np.float32)
    streaks[0, 2:6, 0:8:2] = 1.0
    assert streaks.sum() == square.sum()
    assert _value(losses.mask_boundary_length(streaks)) == pytest.approx(4.5)
    # A soft ramp costs its rise, like a hard edge; empty and full masks cost nothing.
    ramp = np.tile(np.linspace(0.0, 1.0, 8, dtype=np.float32)[None, None, :, None], (1, 8, 1, 1))
    assert _value(losses.mask_boundary_length(ramp)) == pytest.approx(1.0)
    flat = np.concatenate([np.zeros((1, 8, 8, 1)), np.ones((1, 8, 8, 1))]).astype(np.float32)
    assert _value(losses.mask_boundary_length(flat)) == 0.0
    # Averaged over the batch; a random mask against numpy.
    assert _value(losses.mask_boundary_length(np.concatenate([square, flat[:1]]))) == \
        pytest.approx(1.0)
    noisy = RNG.uniform(0.0, 1.0, (2, 6, 6, 1)).astype(np.float32)
    expected = (np.abs(np.diff(noisy, axis=2)).sum(axis=(1, 2, 3))
                + np.abs(np.diff(noisy, axis=1)).sum(axis=(1, 2, 3))).mean() / 6
    assert _value(losses.mask_boundary_length(noisy)) == pytest.approx(expected, rel=1e-5)


def test_edge_aware_boundary_length():
    # A 4x4 square on a flat image costs its plain boundary length (2.0, as above).
    square = np.zeros((1, 8, 8, 1), np.float32)
    square[0, 2:6, 2:6] = 1.0
    flat_image = np.full((1, 8, 8, 3), 0.3, np.float32)
    assert _value(losses.edge_aware_boundary_length(square, flat_image)) == pytest.approx(2.0)
    # The same square drawn in the image with a step of 0.6: the outline lies on the image's
    # edge, so each of its 16 jumps costs exp(-6); the mask of a square shifted by one pixel
    # crosses flat image for 8 of its jumps and costs more than 8 / 8 = 1.
    drawn = np.where(square > 0, 0.6, 0.0).repeat(3, axis=-1).astype(np.float32)
    on_edge = _value(losses.edge_aware_boundary_length(square, drawn))
    assert on_edge == pytest.approx(16 * np.exp(-6.0) / 8, rel=1e-5)
    shifted = np.roll(square, 1, axis=2)
    assert _value(losses.edge_aware_boundary_length(shifted, drawn)) > 1.0 > 10 * on_edge
    # Against numpy on random masks and images (channel-averaged steps), batch-averaged.
    mask = RNG.uniform(0.0, 1.0, (2, 6, 6, 1)).astype(np.float32)
    image = RNG.uniform(-1.0, 1.0, (2, 6, 6, 3)).astype(np.float32)
    expected = sum(
        (np.abs(np.diff(mask, axis=a)) * np.exp(-losses.EDGE_SHARPNESS * np.abs(
            np.diff(image, axis=a)).mean(axis=-1, keepdims=True))).sum(axis=(1, 2, 3))
        for a in (1, 2)).mean() / 6
    assert _value(losses.edge_aware_boundary_length(mask, image)) == pytest.approx(
        expected, rel=1e-5)


def test_perceptual_loss():
    a = RNG.standard_normal((2, 3, 3, 4)).astype(np.float32)
    b = RNG.standard_normal((2, 3, 3, 4)).astype(np.float32)
    assert _value(losses.perceptual_loss(a, b)) == pytest.approx(np.mean((a - b) ** 2), rel=1e-5)
    assert _value(losses.perceptual_loss(a, a)) == 0.0
