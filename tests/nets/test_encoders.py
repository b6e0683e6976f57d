"""Tests for onegan_tf/nets/encoders.py: E_p, E_c and E_bg on the shared tiny model (shapes, the
bypass, independence of the batch, the mask input, E_p's optional context blocks) and their
configs."""

import keras
import numpy as np
import tensorflow as tf

from onegan_tf.nets import encoders, generators

B = 3  # random_images


def test_encoder_outputs(tiny_model, random_images, tiny_config):
    ae, images = tiny_model.autoencoder, random_images
    cfg = tiny_config
    pre_channels = generators.generator_width(cfg.gf_dim, cfg.bypass_size)
    shape = ae.shape_encoder(images)
    expected = {"parent_logits": (B, cfg.num_parents), "parent_mean": (B, cfg.code_dim),
                "parent_log_var": (B, cfg.code_dim), "bypass": (B, 8, 8, pre_channels),
                "z_mean": (B, cfg.z_dim), "z_log_var": (B, cfg.z_dim)}
    assert {k: tuple(v.shape) for k, v in shape.items()} == expected
    style = ae.style_encoder(images)
    assert {k: tuple(v.shape) for k, v in style.items()} == {
        "child_logits": (B, cfg.num_children), "child_mean": (B, cfg.code_dim),
        "child_log_var": (B, cfg.code_dim)}
    for out in (shape, style):
        assert all(v.dtype == tf.float32 for v in out.values())
    # E_p's bypass has exactly the pre-image's shape (it replaces A_fg in mixup 3).
    pre = ae.foreground_pre([tf.zeros((B, cfg.code_dim)), tf.zeros((B, cfg.z_dim))])
    assert shape["bypass"].shape == pre.shape
    # Each image is encoded independently of the rest of the batch.
    single = ae.style_encoder(images[1:2])
    np.testing.assert_allclose(single["child_logits"].numpy(),
                               style["child_logits"].numpy()[1:2], atol=1e-5)


def test_background_encoder_reads_image_and_mask(tiny_model, random_images, tiny_config):
    ae, images = tiny_model.autoencoder, random_images
    mask = tf.ones((B, 32, 32, 1))
    bypass = ae.background_encoder([images, mask])
    pre = ae.background_pre([tf.zeros((B, tiny_config.code_dim)),
                             tf.zeros((B, tiny_config.z_dim))])
    assert bypass.shape == pre.shape
    other = ae.background_encoder([images, tf.zeros_like(mask)])
    assert np.abs(bypass.numpy() - other.numpy()).max() > 0  # the mask is an input
    assert ae.background_encoder.trunk.stem.kernel.shape[2] == 4  # RGB + mask channels


def test_encoder_configs_round_trip(tiny_model, random_images, rebuild_from_config):
    ae, images = tiny_model.autoencoder, random_images
    cases = [(ae.shape_encoder, images), (ae.style_encoder, images),
             (ae.background_encoder, [images, tf.ones((B, 32, 32, 1))])]
    for net, inputs in cases:
        clone = rebuild_from_config(net, inputs)
        assert clone.get_config() == net.get_config(), net.name


def _far_over_near(encoder, size):
    """How much bypass[0, 0] reads the opposite quarter of the image, relative to its own
    corner: sum |d bypass[0, 0, 0, :] / d image| over the far quarter / over the near sixteenth."""
    image = tf.random.stateless_uniform((1, size, size, 3), (3, 4), -1, 1)
    with tf.GradientTape() as tape:
        tape.watch(image)
        corner = tf.reduce_sum(encoder(image)["bypass"][0, 0, 0])
    grad = np.abs(tape.gradient(corner, image).numpy()[0])
    return grad[size // 2:, size // 2:].sum() / grad[:size // 4, :size // 4].sum()


def test_context_blocks_let_the_bypass_see_the_whole_image(tiny_config):
    cfg = tiny_config
    args = (cfg.ef_dim, cfg.gf_dim, cfg.image_size, cfg.bypass_size, cfg.num_parents,
            cfg.code_dim, cfg.z_dim)
    keras.utils.set_random_seed(0)  # fixed initial weights: the ratios below are exact
    plain = encoders.ShapeEncoder(*args, name="E_p")
    wide = encoders.ShapeEncoder(*args, context_blocks=3, name="E_p")
    # Without context, a bypass corner reads the far quarter only through GroupNorm's
    # statistics; with dilations 1, 2, 4 at 8 x 8 its convolutions reach it.
    assert _far_over_near(wide, cfg.image_size) > 3 * _far_over_near(plain, cfg.image_size)
    extra = {w.path for w in wide.weights} - {w.path for w in plain.weights}
    assert extra and all("context" in path for path in extra)
    assert wide.context.dilations == [1, 2, 4]
    assert encoders.ContextStack(5, 16).dilations == [1, 2, 4, 8, 8]
    assert encoders.ContextStack(2, 2).dilations == [1, 1]


def test_context_blocks_round_trip(random_images, tiny_config, rebuild_from_config):
    cfg = tiny_config
    wide = encoders.ShapeEncoder(cfg.ef_dim, cfg.gf_dim, cfg.image_size, cfg.bypass_size,
                                 cfg.num_parents, cfg.code_dim, cfg.z_dim, context_blocks=2)
    clone = rebuild_from_config(wide, random_images)
    assert clone.context_blocks == 2 and len(clone.context.convs) == 2
