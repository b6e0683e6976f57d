"""Tests for onegan_tf/nets/layers.py: NormGLU, ConvGLU, ResBlock, CodeEmbedding, Mixup."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from onegan_tf import config as config_lib
from onegan_tf.nets import layers

RNG = np.random.default_rng(0)


def _normalize(x, axes, eps):
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _reference_norm_glu(x, kind):
    """numpy NormGLU with the initial affine (gamma = 1, beta = 0)."""
    c = x.shape[-1] // 2
    per_sample, per_channel, batch = (1, 2, 3), (1, 2), (0, 1, 2)
    if kind == "glu_layernorm":
        return _normalize(x[..., :c], per_sample, 1e-5) * _sigmoid(x[..., c:])
    if kind == "glu_instancenorm":
        return _normalize(x[..., :c], per_channel, 1e-5) * _sigmoid(x[..., c:])
    axes, eps = {"layernorm": (per_sample, 1e-5), "instancenorm": (per_channel, 1e-5),
                 "batchnorm": (batch, 1e-3)}[kind]
    y = _normalize(x, axes, eps)
    return y[..., :c] * _sigmoid(y[..., c:])


@pytest.mark.parametrize("kind", config_lib.NORMALIZATIONS)
def test_norm_glu_every_kind_matches_reference(kind):
    x = (RNG.standard_normal((3, 5, 4, 6)) * 2.0 + 0.7).astype(np.float32)
    layer = layers.NormGLU(kind)
    out = layer(x, training=True).numpy()
    assert out.shape == (3, 5, 4, 3) and out.dtype == np.float32
    assert layer.compute_output_shape((None, 5, 4, 6)) == (None, 5, 4, 3)
    np.testing.assert_allclose(out, _reference_norm_glu(x, kind), atol=1e-4)
    inference = layer(x, training=False).numpy()
    assert inference.shape == out.shape and np.all(np.isfinite(inference))
    if kind != "batchnorm":  # per-example norms: no batch dependence, training or not
        np.testing.assert_allclose(inference, out, atol=1e-6)
        np.testing.assert_allclose(layer(x[:1], training=True).numpy(), out[:1], atol=1e-5)


@pytest.mark.parametrize("kind", ["glu_layernorm", "glu_instancenorm"])
def test_glu_norm_normalises_left_half_only(kind):
    left = RNG.standard_normal((4, 6, 6, 5)).astype(np.float32) * 3.0 + 5.0
    gate = np.full_like(left, 40.0)  # sigmoid(40) == 1 in float32
    out = layers.NormGLU(kind)(np.concatenate([left, gate], -1)).numpy()
    axes = (1, 2, 3) if kind == "glu_layernorm" else (1, 2)
    np.testing.assert_allclose(out.mean(axis=axes), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.var(axis=axes), 1.0, atol=1e-3)
    # The gate is not normalised: scaling it changes the output (a normalised gate would not).
    small_gate = np.full_like(left, 0.5)
    out_small = layers.NormGLU(kind)(np.concatenate([left, small_gate], -1)).numpy()
    np.testing.assert_allclose(out_small, out * _sigmoid(0.5), rtol=1e-5, atol=1e-6)


def test_norm_glu_rejects_odd_channels():
    with pytest.raises(ValueError, match="even"):
        layers.NormGLU("glu_layernorm")(np.zeros((1, 2, 2, 3), np.float32))
    with pytest.raises(ValueError, match="normalization"):
        layers.make_norm("weightnorm")


@pytest.mark.parametrize("kind", config_lib.NORMALIZATIONS)
def test_conv_glu_and_res_block_run(kind):
    x = RNG.standard_normal((2, 4, 4, 6)).astype(np.float32)
    up = layers.ConvGLU(5, kind, upsample=True)
    assert up(x, training=True).shape == (2, 8, 8, 5)
    same = layers.ConvGLU(7, kind)
    assert same(x).shape == (2, 4, 4, 7)
    block = layers.ResBlock(kind)
    y = block(x, training=True).numpy()
    assert y.shape == x.shape and np.all(np.isfinite(y))
    # Residual: with the final norm's gamma at 0 the block is the identity.
    block.norm.gamma.assign(np.zeros(6, np.float32))
    np.testing.assert_allclose(block(x, training=True).numpy(), x, atol=1e-6)


def test_mixup_end_points_and_convex_combination():
    mixup = layers.Mixup()
    a = RNG.standard_normal((3, 4, 4, 2)).astype(np.float32)
    b = RNG.standard_normal((3, 4, 4, 2)).astype(np.float32)
    np.testing.assert_array_equal(mixup(a, b, np.zeros(3, np.float32)).numpy(), a)
    np.testing.assert_array_equal(mixup(a, b, np.ones(3, np.float32)).numpy(), b)
    np.testing.assert_allclose(mixup(a, b, np.full(3, 0.25, np.float32)).numpy(),
                               0.75 * a + 0.25 * b, rtol=1e-6, atol=1e-6)
    # One beta per example, broadcast over every other axis (rank 4 and rank 2).
    beta = np.array([0.0, 0.5, 1.0], np.float32)
    out = mixup(a, b, beta).numpy()
    np.testing.assert_array_equal(out[0], a[0])
    np.testing.assert_allclose(out[1], 0.5 * (a[1] + b[1]), atol=1e-6)
    np.testing.assert_array_equal(out[2], b[2])
    va, vb = a.reshape(3, -1), b.reshape(3, -1)
    np.testing.assert_allclose(mixup(va, vb, beta).numpy(), out.reshape(3, -1), atol=1e-6)
    # A scalar beta applies to every example.
    np.testing.assert_allclose(mixup(a, b, np.float32(0.25)).numpy(), 0.75 * a + 0.25 * b,
                               atol=1e-6)


def test_mixup_gradients_split_by_beta():
    a, b = tf.Variable(tf.ones((2, 3))), tf.Variable(tf.ones((2, 3)))
    beta = tf.constant([0.2, 0.9])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layers.Mixup()(a, b, beta))
    grad_a, grad_b = tape.gradient(loss, [a, b])
    np.testing.assert_allclose(grad_a.numpy(), np.repeat([[0.8], [0.1]], 3, 1), atol=1e-6)
    np.testing.assert_allclose(grad_b.numpy(), np.repeat([[0.2], [0.9]], 3, 1), atol=1e-6)


def test_code_embedding_is_one_hot_matmul():
    embedding = layers.CodeEmbedding(5, 3)
    ids = np.array([4, 0, 2, 2])
    one_hot = np.eye(5, dtype=np.float32)[ids]
    out = embedding(one_hot).numpy()
    table = embedding.table.numpy()
    assert table.shape == (5, 3) and out.shape == (4, 3)
    np.testing.assert_allclose(out, table[ids], atol=1e-6)
    # Soft one-hots give the matching mixture of rows (gradient path of the encoders' logits).
    soft = RNG.dirichlet(np.ones(5), size=4).astype(np.float32)
    np.testing.assert_allclose(embedding(soft).numpy(), soft @ table, rtol=1e-5, atol=1e-6)
    assert embedding.compute_output_shape((None, 5)) == (None, 3)
    # Integer one-hots are cast to the table dtype.
    np.testing.assert_allclose(embedding(one_hot.astype(np.int32)).numpy(), table[ids], atol=1e-6)


@pytest.mark.parametrize("height, width, upsample", [(6, 5, False), (4, 3, True)])
def test_joint_conv_with_a_code_is_the_conv_of_the_tiled_code(height, width, upsample):
    """ConvGLU(x, code=c) computes, with the same weights, what the conv of x with c tiled over
    it as more channels computes (FineGAN's joint conv): outputs and the gradients of the
    kernel, x and c agree, borders included."""
    x = tf.constant(RNG.standard_normal((2, height, width, 4)).astype(np.float32))
    code = tf.constant(RNG.standard_normal((2, 3)).astype(np.float32))
    joint = layers.ConvGLU(5, upsample=upsample)
    joint(x, code=code)
    assert joint.conv.kernel.shape == (3, 3, 4 + 3, 10)
    plain = layers.ConvGLU(5)  # the reference: an ordinary conv on the concatenation
    size = (2 * height, 2 * width) if upsample else (height, width)
    plain.build((2, *size, 4 + 3))
    plain.set_weights(joint.get_weights())

    def tiled(x, code):
        if upsample:
            x = tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)
        return tf.concat([x, tf.tile(code[:, None, None, :], (1, *size, 1))], -1)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, code])
        ours = joint(x, code=code)
        reference = plain(tiled(x, code))
        weights = tf.constant(RNG.standard_normal(ours.shape).astype(np.float32))
        loss_ours, loss_reference = (tf.reduce_sum(ours * weights),
                                     tf.reduce_sum(reference * weights))
    np.testing.assert_allclose(ours.numpy(), reference.numpy(), atol=1e-5)
    for a, b in [(joint.conv.kernel, plain.conv.kernel), (x, x), (code, code)]:
        np.testing.assert_allclose(tape.gradient(loss_ours, a).numpy(),
                                   tape.gradient(loss_reference, b).numpy(), atol=1e-4)


def test_inside_taps_marks_the_padding():
    taps = layers.inside_taps(3, 4, 3).reshape(3, 4, 3, 3)
    assert taps[1, 1].all()  # an inner pixel reads all nine taps
    np.testing.assert_array_equal(taps[0, 0], [[0, 0, 0], [0, 1, 1], [0, 1, 1]])  # corner
    np.testing.assert_array_equal(taps[2, 1], [[1, 1, 1], [1, 1, 1], [0, 0, 0]])  # bottom edge
    assert taps.sum() == (2 + 3 + 2) * (2 + 3 + 3 + 2)  # valid rows x valid columns


def _round_trip(layer, *inputs):
    out = layer(*inputs)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone(*inputs)  # builds
    clone.set_weights(layer.get_weights())
    again = clone(*inputs)
    for x, y in zip(tf.nest.flatten(out), tf.nest.flatten(again)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6)
    # Registered as serializable: the generic Keras path finds the class by name.
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config
    return config


def test_layer_configs_round_trip():
    x = RNG.standard_normal((2, 4, 4, 6)).astype(np.float32)
    assert _round_trip(layers.NormGLU("glu_instancenorm", name="g"), x)["norm"] == (
        "glu_instancenorm")
    cfg = _round_trip(layers.ConvGLU(5, "layernorm", upsample=True, name="c"), x)
    assert (cfg["filters"], cfg["upsample"]) == (5, True)
    assert _round_trip(layers.ResBlock("instancenorm", name="r"), x)["norm"] == "instancenorm"
    one_hot = np.eye(4, dtype=np.float32)[[1, 3]]
    cfg = _round_trip(layers.CodeEmbedding(4, 7, name="e"), one_hot)
    assert (cfg["num_codes"], cfg["code_dim"]) == (4, 7)
