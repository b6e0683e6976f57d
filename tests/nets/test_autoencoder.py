"""Shapes, ranges and wiring of every network: generators, encoders, discriminators, AutoEncoder."""

import numpy as np
import pytest
import tensorflow as tf

from onegan_tf import config as config_lib
from onegan_tf.nets import autoencoder as ae_lib
from onegan_tf.nets import discriminators, encoders, generators
from onegan_tf.serving import inference
from onegan_tf.training import loop
from onegan_tf.training.trainer import OneGAN

B = 3


@pytest.fixture(scope="module")
def ae(tiny_model):
    return tiny_model.autoencoder


@pytest.fixture(scope="module")
def images():
    return tf.random.stateless_uniform((B, 32, 32, 3), (1, 2), -1.0, 1.0)


@pytest.fixture(scope="module")
def generated(ae, tiny_config):
    child = tf.constant([0, 5, tiny_config.num_children - 1], tf.int32)
    z = tf.random.stateless_normal((B, tiny_config.z_dim), (3, 4))
    return child, {k: v.numpy() for k, v in ae.generate(child, z).items()}


def _in_range(x, low, high):
    x = np.asarray(x)
    return x.dtype == np.float32 and x.min() >= low and x.max() <= high


def test_generate_outputs(generated, tiny_config):
    cfg = tiny_config
    _, out = generated
    pre_channels = generators.generator_width(cfg.gf_dim, cfg.bypass_size)
    for key in ("image", "foreground", "background"):
        assert out[key].shape == (B, 32, 32, 3), key
        assert _in_range(out[key], -1.0, 1.0), key
    assert out["mask"].shape == (B, 32, 32, 1) and _in_range(out["mask"], 0.0, 1.0)
    for key in ("pre_foreground", "pre_background"):
        assert out[key].shape == (B, 8, 8, pre_channels), key
    for key in ("v_bg", "v_p", "v_c"):
        assert out[key].shape == (B, cfg.code_dim), key
    # Non-degenerate at init: the mask is soft and the images are not constant.
    assert 0.0 < out["mask"].mean() < 1.0 and out["image"].std() > 0


def test_generate_uses_tied_codes(ae, generated, tiny_config):
    cfg = tiny_config
    child, out = generated
    parent = ae_lib.parent_of(child, cfg.num_children, cfg.num_parents).numpy()
    np.testing.assert_allclose(out["v_c"], ae.child_embedding.table.numpy()[child.numpy()],
                               atol=1e-6)
    np.testing.assert_allclose(out["v_p"], ae.parent_embedding.table.numpy()[parent], atol=1e-6)
    # e_bg = e_p (Eq. 1): the background code is selected by the parent id.
    np.testing.assert_allclose(out["v_bg"], ae.background_embedding.table.numpy()[parent],
                               atol=1e-6)


def test_generated_image_is_the_composite(generated):
    _, out = generated
    expected = out["background"] * (1.0 - out["mask"]) + out["foreground"] * out["mask"]
    np.testing.assert_allclose(out["image"], expected, atol=1e-6)


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


@pytest.mark.parametrize("num_children, num_parents",
                         [(196, 14), (200, 20), (120, 12), (12, 4), (7, 3), (5, 5), (13, 1)])
def test_parent_of_tie_rule(num_children, num_parents):
    child = np.arange(num_children, dtype=np.int32)
    parent = ae_lib.parent_of(child, num_children, num_parents).numpy()
    np.testing.assert_array_equal(parent, np.floor(child * num_parents / num_children))
    assert parent.min() == 0 and parent.max() == num_parents - 1  # never >= N_P, all used
    assert np.all(np.diff(parent) >= 0)  # children of one parent are contiguous
    counts = np.bincount(parent, minlength=num_parents)
    assert counts.max() - counts.min() <= 1  # balanced
    if num_children % num_parents == 0:
        assert np.all(counts == num_children // num_parents)


def test_one_hots(ae, tiny_config):
    cfg = tiny_config
    e_p, e_c = ae.one_hots(tf.constant([0, 11, 6]))
    assert e_p.shape == (3, cfg.num_parents) and e_c.shape == (3, cfg.num_children)
    np.testing.assert_array_equal(np.argmax(e_p, -1), [0, 3, 2])
    np.testing.assert_array_equal(np.argmax(e_c, -1), [0, 11, 6])


def test_straight_through_one_hot():
    logits = tf.constant([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        hard = ae_lib.straight_through_one_hot(logits)
        loss = tf.reduce_sum(hard * tf.constant([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(hard.numpy(), [[0, 1, 0], [1, 0, 0]], atol=1e-6)
    grad = tape.gradient(loss, logits).numpy()
    # Backward = softmax Jacobian: J^T w = p * (w - <p, w>).
    p = tf.nn.softmax(logits).numpy()
    w = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(grad, p * (w - (p * w).sum(-1, keepdims=True)), atol=1e-5)


def test_encoder_outputs(ae, images, tiny_config):
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


def test_background_encoder_reads_image_and_mask(ae, images, tiny_config):
    mask = tf.ones((B, 32, 32, 1))
    bypass = ae.background_encoder([images, mask])
    pre = ae.background_pre([tf.zeros((B, tiny_config.code_dim)),
                             tf.zeros((B, tiny_config.z_dim))])
    assert bypass.shape == pre.shape
    other = ae.background_encoder([images, tf.zeros_like(mask)])
    assert np.abs(bypass.numpy() - other.numpy()).max() > 0  # the mask is an input
    assert ae.background_encoder.trunk.stem.kernel.shape[2] == 4  # RGB + mask channels


def test_reconstruct_outputs(ae, images, tiny_config):
    out = ae.reconstruct(images)
    for key in ("image", "foreground", "background"):
        assert out[key].shape == (B, 32, 32, 3) and _in_range(out[key], -1.0, 1.0)
    assert out["mask"].shape == (B, 32, 32, 1) and _in_range(out["mask"], 0.0, 1.0)
    np.testing.assert_allclose(
        out["image"].numpy(),
        generators.compose(out["background"], out["foreground"], out["mask"]).numpy(), atol=1e-6)
    assert set(out["encoded"]) >= {"parent_logits", "child_logits", "bypass", "z_mean"}
    # call() is the reconstruction path at inference.
    np.testing.assert_allclose(ae(images).get("image").numpy(), out["image"].numpy(), atol=1e-6)


def test_reconstruct_betas_select_the_sources(ae, images, tiny_config):
    """beta = 1 everywhere ignores the embeddings (encoder vectors + bypasses); beta = 0 uses the
    embeddings/pre-images. Zeroing an embedding table therefore matters only for beta = 0."""
    ones = {f"beta{i}": tf.ones((B,)) for i in range(1, 5)}
    zeros = {f"beta{i}": tf.zeros((B,)) for i in range(1, 5)}
    table = ae.child_embedding.table
    saved = table.numpy()
    try:
        with_ones, with_zeros = ae.reconstruct(images, ones), ae.reconstruct(images, zeros)
        table.assign(np.zeros_like(saved))
        ones_after, zeros_after = ae.reconstruct(images, ones), ae.reconstruct(images, zeros)
    finally:
        table.assign(saved)
    np.testing.assert_allclose(ones_after["image"].numpy(), with_ones["image"].numpy(), atol=1e-6)
    assert np.abs(zeros_after["image"].numpy() - with_zeros["image"].numpy()).max() > 1e-4
    np.testing.assert_allclose(ae.reconstruct(images)["image"].numpy(),
                               with_ones["image"].numpy(), atol=1e-6)


def test_translation_swaps_the_child_code(ae, images, tiny_config):
    """Fig. 6: inference.translate re-renders with another child code (beta2 = 0 takes v_c from
    the embedding of the requested child)."""
    n = tiny_config.num_children
    first = inference.translate(ae, images, 0).numpy()
    second = inference.translate(ae, images, n - 1).numpy()
    assert first.shape == (B, 32, 32, 3) and _in_range(first, -1.0, 1.0)
    assert np.abs(first - second).max() > 1e-4
    per_example = inference.translate(ae, images, tf.constant([0, n - 1, 0])).numpy()
    np.testing.assert_allclose(per_example[[0, 2]], first[[0, 2]], atol=1e-5)
    np.testing.assert_allclose(per_example[1], second[1], atol=1e-5)


def test_background_discriminator_outputs(tiny_model, images, tiny_config):
    out = tiny_model.background_discriminator(images)
    df = tiny_config.df_dim
    assert out["real_fake"].shape == (B, 8, 8, 1)  # patch logits (two stride-2 convs)
    assert out["is_background"].shape == (B, 8, 8, 1)
    assert out["features"].shape == (B, 8, 8, 4 * df)
    assert all(v.dtype == tf.float32 for v in out.values())


def test_object_discriminator_outputs(tiny_model, images, tiny_config):
    d_c = tiny_model.object_discriminator
    out = d_c(images)
    assert out["real_fake"].shape == (B,)
    assert out["child_logits"].shape == (B, tiny_config.num_children)
    assert out["features"].shape[0] == B and out["features"].shape[1:3] == (8, 8)  # H / 4
    assert all(v.dtype == tf.float32 for v in out.values())
    # The info head and the adversarial variables partition D_c's trainable variables.
    info = {id(v) for v in d_c.info_variables}
    adversarial = {id(v) for v in d_c.adversarial_variables}
    assert info and adversarial and not info & adversarial
    assert info | adversarial == {id(v) for v in d_c.trainable_variables}
    assert all("info" in v.path for v in d_c.info_variables)


def _rebuild(net, inputs):
    clone = type(net).from_config(net.get_config())
    out = net(inputs)
    clone(inputs)
    assert [w.shape for w in clone.weights] == [w.shape for w in net.weights]
    clone.set_weights(net.get_weights())
    for x, y in zip(tf.nest.flatten(out), tf.nest.flatten(clone(inputs))):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5)
    return clone


def test_network_configs_round_trip(tiny_model, images, tiny_config):
    cfg, ae = tiny_config, tiny_model.autoencoder
    codes = [tf.ones((B, cfg.code_dim)), tf.ones((B, cfg.z_dim))]
    pre = ae.foreground_pre(codes)
    features = ae.shape_generator([pre, codes[0]])
    cases = [
        (ae.background_pre, codes), (ae.foreground_pre, codes),
        (ae.background_generator, pre), (ae.shape_generator, [pre, codes[0]]),
        (ae.appearance_generator, [features, codes[0]]),
        (ae.shape_encoder, images), (ae.style_encoder, images),
        (ae.background_encoder, [images, tf.ones((B, 32, 32, 1))]),
        (tiny_model.background_discriminator, images),
        (tiny_model.object_discriminator, images),
    ]
    for net, inputs in cases:
        clone = _rebuild(net, inputs)
        assert clone.get_config() == net.get_config(), net.name
    # The whole AutoEncoder: its config carries the Config as a dict.
    clone = ae_lib.AutoEncoder.from_config(ae.get_config())
    assert clone.config == cfg
    clone.build_all()
    assert [w.shape for w in clone.weights] == [w.shape for w in ae.weights]


def test_network_classes_are_the_paper_modules(tiny_model):
    names = set(tiny_model.networks())
    assert names == {"V_bg", "V_p", "V_c", "G_bg0", "G_bg1", "G_fg0", "G_fg1", "G_fg2", "E_p",
                     "E_c", "E_bg", "D_bg", "D_c", "D_bg_fake", "D_c_fake", "D_bg_real",
                     "D_c_real"}
    nets = tiny_model.networks()
    assert isinstance(nets["D_c"], discriminators.ObjectDiscriminator)
    assert isinstance(nets["E_p"], encoders.ShapeEncoder)


def test_ema_starts_equal_to_the_autoencoder(tiny_model):
    for a, e in zip(tiny_model.autoencoder.weights, tiny_model.ema.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), e.numpy())


def test_paper_size_build_and_parameter_counts():
    """Build (no training) of the CUB configuration: 128 px, gf = df = 64, 200/20 classes."""
    cfg = config_lib.preset("cub")
    model = OneGAN(cfg)
    counts = loop.parameter_counts(model)
    print("\nparameters at paper size (cub):", counts, f"total {sum(counts.values()):,}")
    assert counts["V_c"] == 200 * cfg.code_dim and counts["V_p"] == 20 * cfg.code_dim
    assert counts["V_bg"] == counts["V_p"]
    for name in ("D_bg", "D_c"):  # clones are the same architecture
        assert counts[f"{name}_fake"] == counts[f"{name}_real"] == counts[name]
    assert counts["G_bg0"] == counts["G_fg0"]
    generator = sum(counts[k] for k in ("G_bg0", "G_bg1", "G_fg0", "G_fg1", "G_fg2"))
    encoder = sum(counts[k] for k in ("E_p", "E_c", "E_bg"))
    assert 5e6 < generator < 2e8 and 5e6 < encoder < 2e8
    assert 1e5 < counts["D_bg"] < 1e7 and 1e6 < counts["D_c"] < 5e7
    assert 3e7 < sum(counts.values()) < 5e8
    # Shapes at 128 px: pre-images at 32 x 32, images at 128.
    out = model.ema.generate(tf.constant([199]), tf.zeros((1, cfg.z_dim)))
    assert out["image"].shape == (1, 128, 128, 3) and out["mask"].shape == (1, 128, 128, 1)
    assert out["pre_foreground"].shape[1:3] == (32, 32)
    assert model.object_discriminator(out["image"])["child_logits"].shape == (1, 200)
