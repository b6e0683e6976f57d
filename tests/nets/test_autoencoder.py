"""Tests for onegan_tf/nets/autoencoder.py: the generation flow (Eq. 1-5), the reconstruction
flow and its mixups (Sec. 4.2, Eq. 6-9), the tie rule of the code tree, the straight-through
one-hot and the AutoEncoder's config.

The networks are the shared, untrained tiny_model's; gradient tests tap its sub-networks (the
taps are undone after each test).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from gradient_taps import output_objective, per_example_abs_sum, tap, tap_pre_images_and_bypasses
from scipy.special import logit

from onegan_tf import config as config_lib
from onegan_tf.nets import autoencoder as ae_lib
from onegan_tf.nets import generators
from onegan_tf.nets.autoencoder import AutoEncoder, straight_through_one_hot
from onegan_tf.serving import inference

B = 3  # random_images, and the generated batch below
BATCH = 4  # held_out_images (the tiny batch)


@pytest.fixture(scope="module")
def ae(tiny_model):
    return tiny_model.autoencoder


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


def test_reconstruct_outputs(ae, random_images):
    images = random_images
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


def test_reconstruct_betas_select_the_sources(ae, random_images):
    """beta = 1 everywhere ignores the embeddings (encoder vectors + bypasses); beta = 0 uses the
    embeddings/pre-images. Zeroing an embedding table therefore matters only for beta = 0."""
    images = random_images
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


# --- reconstruction: the mixups (Eq. 9) -----------------------------------------------------
def test_mixup_end_points_select_pre_image_or_bypass_per_example(tiny_model, held_out_images,
                                                                 monkeypatch):
    """beta3 = beta4 = 0 -> outputs independent of B_fg, B_bg; 1 -> independent of A_fg, A_bg;
    per example (examples 0, 2 use beta 0; 1, 3 use beta 1)."""
    ae = tiny_model.autoencoder
    taps = tap_pre_images_and_bypasses(monkeypatch, ae)
    pick = tf.constant([0.0, 1.0, 0.0, 1.0])
    betas = {"beta1": tf.fill((BATCH,), 0.5), "beta2": tf.fill((BATCH,), 0.5),
             "beta3": pick, "beta4": pick}
    with tf.GradientTape() as tape:
        out = ae.reconstruct(held_out_images, betas, training=True)
        objective = output_objective(out)
    grads = dict(zip(taps, tape.gradient(objective, list(taps.values()))))
    g = {k: per_example_abs_sum(v) for k, v in grads.items()}
    for pre, bypass in (("A_fg", "B_fg"), ("A_bg", "B_bg")):
        # beta = 0 (examples 0, 2): only the pre-image matters.
        assert np.all(g[bypass][[0, 2]] == 0), (bypass, g[bypass])
        assert np.all(g[pre][[0, 2]] > 0), (pre, g[pre])
        # beta = 1 (examples 1, 3): only the bypass matters.
        assert np.all(g[pre][[1, 3]] == 0), (pre, g[pre])
        assert np.all(g[bypass][[1, 3]] > 0), (bypass, g[bypass])

    # The same with sampled betas in (0.5, 1): both inputs matter for every example.
    with tf.GradientTape() as tape:
        out = ae.reconstruct(held_out_images, tiny_model.sample_betas(BATCH, 13), training=True)
        objective = output_objective(out)
    grads = dict(zip(taps, tape.gradient(objective, list(taps.values()))))
    for name, grad in grads.items():
        assert np.all(per_example_abs_sum(grad) > 0), name


def test_mixup_end_points_on_code_vectors(ae, held_out_images, monkeypatch):
    """beta1/beta2 = 0 -> the embeddings' (v_p, v_c) only; 1 -> the encoders' (v_p-hat, v_c-hat)."""
    taps = {}
    tap(monkeypatch, ae.shape_encoder, taps, "v_p_hat", key="parent_mean")
    tap(monkeypatch, ae.style_encoder, taps, "v_c_hat", key="child_mean")
    tap(monkeypatch, ae.parent_embedding, taps, "v_p")
    tap(monkeypatch, ae.child_embedding, taps, "v_c")
    pick = tf.constant([0.0, 1.0, 0.0, 1.0])
    half = tf.fill((BATCH,), 0.75)
    betas = {"beta1": pick, "beta2": pick, "beta3": half, "beta4": half}
    with tf.GradientTape() as tape:
        objective = output_objective(ae.reconstruct(held_out_images, betas, training=True))
    g = {k: per_example_abs_sum(v)
         for k, v in zip(taps, tape.gradient(objective, list(taps.values())))}
    for embedded, encoded in (("v_p", "v_p_hat"), ("v_c", "v_c_hat")):
        assert np.all(g[encoded][[0, 2]] == 0) and np.all(g[embedded][[0, 2]] > 0), g
        assert np.all(g[embedded][[1, 3]] == 0) and np.all(g[encoded][[1, 3]] > 0), g


def test_bypass_perturbation_is_invisible_at_beta_zero(ae, held_out_images):
    """Forward check of the same end point: replacing B_fg by noise changes nothing when
    beta3 = beta4 = 0, and changes the outputs when they are 1."""
    encoded = ae.encode(held_out_images)
    noisy = dict(encoded, bypass=encoded["bypass"]
                 + tf.random.stateless_normal(tf.shape(encoded["bypass"]), (1, 2)))

    def run(beta, enc):
        b = tf.fill((BATCH,), float(beta))
        return ae.reconstruct(held_out_images, {"beta1": b, "beta2": b, "beta3": b, "beta4": b},
                              encoded=enc)

    for key in ("image", "mask", "background"):
        np.testing.assert_array_equal(run(0, encoded)[key].numpy(), run(0, noisy)[key].numpy())
    assert not np.allclose(run(1, encoded)["mask"].numpy(), run(1, noisy)["mask"].numpy())


@pytest.mark.parametrize("norm", config_lib.NORMALIZATIONS)
def test_norm_variants_build_and_reconstruct(tiny_config, held_out_images, norm):
    keras.utils.set_random_seed(0)
    ae = AutoEncoder(tiny_config.replace(norm=norm))
    ae.build_all()
    ones = tf.ones((BATCH,))
    betas = {"beta1": 0.5 * ones, "beta2": 0.5 * ones, "beta3": 0.75 * ones, "beta4": 0.75 * ones}
    with tf.GradientTape() as tape:
        out = ae.reconstruct(held_out_images, betas, training=True)
        objective = output_objective(out)
    for key in ("image", "foreground", "background"):
        assert out[key].shape == (BATCH, 32, 32, 3)
        assert np.all(np.abs(out[key].numpy()) <= 1.0)
    assert out["mask"].shape == (BATCH, 32, 32, 1)
    assert np.all((out["mask"].numpy() >= 0) & (out["mask"].numpy() <= 1))
    grads = tape.gradient(objective, ae.trainable_variables)
    assert all(np.all(np.isfinite(g.numpy())) for g in grads if g is not None)
    assert sum(g is not None for g in grads) > 0.9 * len(grads)
    # Inference mode too (batchnorm's moving statistics).
    assert np.all(np.isfinite(inference.reconstruct(ae, held_out_images)["image"].numpy()))


def test_straight_through_one_hot():
    """Forward: the one-hot of the argmax. Backward: the softmax's gradient, J^T w =
    p * (w - <p, w>)."""
    logits = tf.constant(np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32) * 3)
    weights = tf.constant(np.random.default_rng(1).standard_normal((5, 7)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        hard = straight_through_one_hot(logits)
        soft = tf.nn.softmax(logits)
        hard_objective = tf.reduce_sum(hard * weights)
        soft_objective = tf.reduce_sum(soft * weights)
    np.testing.assert_allclose(hard.numpy(), tf.one_hot(tf.argmax(logits, -1), 7).numpy(),
                               atol=1e-6)
    hard_grad = tape.gradient(hard_objective, logits)
    assert hard_grad is not None, "no gradient reaches the logits"
    np.testing.assert_allclose(hard_grad.numpy(), tape.gradient(soft_objective, logits).numpy(),
                               rtol=1e-5, atol=1e-7)
    assert np.abs(hard_grad.numpy()).sum() > 0
    p, w = soft.numpy(), weights.numpy()
    np.testing.assert_allclose(hard_grad.numpy(), p * (w - (p * w).sum(-1, keepdims=True)),
                               atol=1e-5)
    # A hand example: rows pick classes 1 and 0.
    np.testing.assert_allclose(straight_through_one_hot(tf.constant([[0.1, 2.0, -1.0],
                                                                     [3.0, 0.0, 0.5]])).numpy(),
                               [[0, 1, 0], [1, 0, 0]], atol=1e-6)


def test_straight_through_selects_the_predicted_embedding(ae, held_out_images):
    """In reconstruction, v_p / v_c are the embeddings of the encoders' argmax classes."""
    out = ae.reconstruct(held_out_images)
    enc = out["encoded"]
    parent = tf.argmax(enc["parent_logits"], -1)
    child = tf.argmax(enc["child_logits"], -1)
    np.testing.assert_allclose(out["v_p"].numpy(),
                               tf.gather(ae.parent_embedding.table, parent).numpy(), atol=1e-5)
    np.testing.assert_allclose(out["v_c"].numpy(),
                               tf.gather(ae.child_embedding.table, child).numpy(), atol=1e-5)
    np.testing.assert_allclose(out["v_bg"].numpy(),
                               tf.gather(ae.background_embedding.table, parent).numpy(),
                               atol=1e-5)


def test_autoencoder_config_round_trip(ae, tiny_config):
    """The AutoEncoder's config carries the Config as a dict (its sub-networks: the round trips
    in test_generators.py and test_encoders.py)."""
    clone = AutoEncoder.from_config(ae.get_config())
    assert clone.config == tiny_config
    clone.build_all()
    assert [w.shape for w in clone.weights] == [w.shape for w in ae.weights]


def test_pose_moves_only_the_object_layer_of_generated_images(ae, tiny_config):
    """pose_* options: z = 0 draws exactly the paper's image; z[:, 0:4] moves I_fg and I_m
    together and leaves the background alone; reconstruction is unchanged."""
    posed = AutoEncoder(tiny_config.replace(pose_rotation=90, pose_scale=1.5, pose_shift=0.2))
    posed.build_all()
    ae_lib.copy_weights(ae, posed)
    child = tf.range(4, dtype=tf.int32)
    z = tf.zeros((4, tiny_config.z_dim))
    plain, same = ae.generate(child, z), posed.generate(child, z)
    np.testing.assert_array_equal(np.asarray(plain["image"]), np.asarray(same["image"]))
    z_pose = tf.concat([tf.fill((4, 4), 0.8), tf.zeros((4, tiny_config.z_dim - 4))], axis=1)
    plain, moved = ae.generate(child, z_pose), posed.generate(child, z_pose)
    np.testing.assert_array_equal(np.asarray(plain["background"]),
                                  np.asarray(moved["background"]))
    assert float(tf.reduce_max(tf.abs(plain["mask"] - moved["mask"]))) > 0.05
    np.testing.assert_allclose(
        np.asarray(moved["image"]),
        np.asarray(moved["background"] * (1 - moved["mask"])
                   + moved["foreground"] * moved["mask"]), atol=1e-6)
    images = tf.random.uniform((2, tiny_config.image_size, tiny_config.image_size, 3), -1, 1)
    np.testing.assert_array_equal(np.asarray(ae.reconstruct(images)["mask"]),
                                  np.asarray(posed.reconstruct(images)["mask"]))


_POSE = dict(pose_rotation=90, pose_scale=1.5, pose_shift=0.2)


def _copy_of(ae, config):
    """An AutoEncoder built with `config` that holds `ae`'s weights."""
    model = AutoEncoder(config)
    model.build_all()
    ae_lib.copy_weights(ae, model)
    return model


def _posing_z(config, batch=4):
    """z whose pose dimensions are all 0.8 (a clear turn, scale and shift), the rest 0."""
    return tf.concat([tf.fill((batch, 4), 0.8), tf.zeros((batch, config.z_dim - 4))], axis=1)


def _posed(pre_image, z):
    """A_fg moved by _POSE at the pre-image's resolution."""
    return generators.apply_pose(pre_image, generators.pose_transforms(
        z, pre_image.shape[1], _POSE["pose_rotation"], _POSE["pose_scale"],
        _POSE["pose_shift"]))


def test_pose_moves_the_pre_image_that_the_bypass_stands_for(ae, tiny_config):
    """With the object pose on, generate's pre_foreground (Eq. 13's target for E_p's bypass,
    which is read off the posed image) is A_fg moved by the same pose at the pre-image's
    resolution, and the reconstruction mixes A_fg in posed by its z-hat (mixup 3), with
    `posed_bypass`; without it both stay canonical."""
    posed = _copy_of(ae, tiny_config.replace(posed_bypass=True, **_POSE))
    canonical_bypass = _copy_of(ae, tiny_config.replace(**_POSE))
    child = tf.range(4, dtype=tf.int32)
    z = _posing_z(tiny_config)
    _, v_p, _ = posed.embed(*posed.one_hots(child))
    canonical = posed.foreground_pre([v_p, z])
    size = canonical.shape[1]
    assert size == tiny_config.image_size // tiny_config.bypass_divisor
    out = posed.generate(child, z)
    np.testing.assert_allclose(np.asarray(out["pre_foreground"]),
                               np.asarray(_posed(canonical, z)), atol=1e-6)
    assert float(tf.reduce_max(tf.abs(out["pre_foreground"] - canonical))) > 0.05
    for model in (ae, canonical_bypass):  # no pose, or the default: A_fg as drawn
        np.testing.assert_allclose(np.asarray(model.generate(child, z)["pre_foreground"]),
                                   np.asarray(canonical), atol=1e-6)
    images = tf.random.uniform((2, tiny_config.image_size, tiny_config.image_size, 3), -1, 1)
    betas = {k: tf.ones((2,)) for k in ("beta1", "beta2", "beta4")}
    betas["beta3"] = tf.zeros((2,))  # A_fg only: the pose of z-hat shows
    diff = posed.reconstruct(images, betas)["mask"] - ae.reconstruct(images, betas)["mask"]
    assert float(tf.reduce_max(tf.abs(diff))) > 1e-3
    np.testing.assert_allclose(np.asarray(canonical_bypass.reconstruct(images, betas)["mask"]),
                               np.asarray(ae.reconstruct(images, betas)["mask"]), atol=1e-6)


@pytest.mark.parametrize("in_pre_image", [False, True])
def test_pose_in_pre_image_makes_generation_draw_what_reconstruction_draws(ae, tiny_config,
                                                                           in_pre_image):
    """With `pose_in_pre_image` the generator poses A_fg before G_fg1 and does not move the
    drawn layer, so a generated object layer is exactly what the reconstruction path's decoder
    draws from the same codes with mixup 3 at A_fg (beta3 = 0); with the pose on the drawn
    layer (the default) the two differ, even with the posed A_fg in mixup 3. Either way Eq.
    13's target is the posed A_fg."""
    posed = _copy_of(ae, tiny_config.replace(
        pose_in_pre_image=in_pre_image, posed_bypass=not in_pre_image, **_POSE))
    child = tf.range(4, dtype=tf.int32)
    z = _posing_z(tiny_config)
    _, v_p, v_c = posed.embed(*posed.one_hots(child))
    canonical = posed.foreground_pre([v_p, z])
    bypass = tf.random.normal(canonical.shape)
    _, fg_rec, mask_rec = posed.decode_foreground(v_p, v_c, z, bypass, tf.zeros((4,)))
    out = posed.generate(child, z)
    gap = float(tf.reduce_max(tf.abs(out["mask"] - mask_rec)))
    if in_pre_image:
        assert gap < 1e-5
        np.testing.assert_allclose(np.asarray(out["foreground"]), np.asarray(fg_rec), atol=1e-5)
    else:
        assert gap > 0.05
    np.testing.assert_allclose(np.asarray(out["pre_foreground"]),
                               np.asarray(_posed(canonical, z)), atol=1e-6)


@pytest.mark.parametrize("field", ["pose_in_pre_image", "posed_bypass", "pose_blind"])
def test_pose_options_need_a_pose(tiny_config, field):
    with pytest.raises(ValueError, match=field):
        tiny_config.replace(**{field: True})
    assert getattr(tiny_config.replace(pose_shift=0.1, **{field: True}), field)


@pytest.mark.parametrize("field", ["pose_in_pre_image", "posed_bypass"])
def test_posed_pre_image_options_pose_the_bypass(tiny_config, field):
    assert tiny_config.replace(pose_shift=0.1, **{field: True}).bypass_is_posed
    assert not tiny_config.replace(pose_shift=0.1).bypass_is_posed
    assert not tiny_config.replace(pose_shift=0.1, pose_blind=True).bypass_is_posed


def test_pose_blind_generator_cannot_see_the_pose(ae, tiny_config):
    """With `pose_blind`, A_fg (and so the canonical object) does not depend on the pose's
    noise z[:, 0:4], in generation and reconstruction alike, and gets no gradient from it; it
    still depends on the rest of z. Without it, G_fg0 reads the whole z."""
    blind, seeing = (_copy_of(ae, tiny_config.replace(pose_blind=b, **_POSE))
                     for b in (True, False))
    child = tf.range(4, dtype=tf.int32)
    _, v_p, v_c = blind.embed(*blind.one_hots(child))
    rest = tf.random.stateless_normal((4, tiny_config.z_dim - 4), (5, 0))
    z_a = tf.concat([tf.zeros((4, 4)), rest], axis=1)
    z_b = tf.concat([tf.fill((4, 4), 0.8), rest], axis=1)
    with tf.GradientTape() as tape:
        tape.watch(z_b)
        pre_b = blind.decode_foreground(v_p, v_c, z_b)[0]
    grad = tape.gradient(pre_b, z_b)
    np.testing.assert_array_equal(np.asarray(blind.decode_foreground(v_p, v_c, z_a)[0]),
                                  np.asarray(pre_b))
    assert float(tf.reduce_max(tf.abs(grad[:, :4]))) == 0.0
    assert float(tf.reduce_max(tf.abs(grad[:, 4:]))) > 0.0
    gap = (seeing.decode_foreground(v_p, v_c, z_a)[0] - seeing.decode_foreground(v_p, v_c, z_b)[0])
    assert float(tf.reduce_max(tf.abs(gap))) > 1e-4
    # The pose still moves the drawn object layer: the posed mask differs from z_a's.
    moved = blind.generate(child, z_b)["mask"] - blind.generate(child, z_a)["mask"]
    assert float(tf.reduce_max(tf.abs(moved))) > 0.05


def test_mask_divisor_coarsens_generated_and_reconstructed_masks(ae, tiny_config):
    coarse = _copy_of(ae, tiny_config.replace(mask_divisor=4))  # only G_fg2's coarsening differs
    child, z = tf.constant([0, 1], tf.int32), tf.random.stateless_normal((2, tiny_config.z_dim),
                                                                          (5, 6))
    gen, fine = coarse.generate(child, z), ae.generate(child, z)
    pairs = [(gen["mask"], fine["mask"]),
             (coarse.reconstruct(fine["image"])["mask"], ae.reconstruct(fine["image"])["mask"])]
    for mask, per_pixel in pairs:
        np.testing.assert_allclose(
            logit(mask), np.asarray(generators.coarse_logits(tf.constant(logit(per_pixel)), 4)),
            atol=1e-3)
        assert not np.allclose(np.asarray(mask), np.asarray(per_pixel), atol=1e-3)


def test_fg_gf_dim_widens_the_object_generators_only(ae, tiny_config):
    wide_config = tiny_config.replace(fg_gf_dim=2 * tiny_config.gf_dim)
    wide = AutoEncoder(wide_config)
    wide.build_all()
    widened = {"G_fg1", "G_fg2"}
    for name, network in ae.networks().items():
        if name in widened:
            assert wide.networks()[name].count_params() > network.count_params(), name
        else:
            assert wide.networks()[name].count_params() == network.count_params(), name
    size = tiny_config.image_size
    pre = tf.zeros((1, tiny_config.bypass_size, tiny_config.bypass_size,
                    generators.generator_width(tiny_config.gf_dim, tiny_config.bypass_size)))
    parent = tf.zeros((1, tiny_config.code_dim))
    assert wide.shape_generator((pre, parent)).shape[-1] == generators.generator_width(
        wide_config.fg_gf_dim, size) == 2 * ae.shape_generator((pre, parent)).shape[-1]
    child, z = tf.constant([0, 1], tf.int32), tf.zeros((2, tiny_config.z_dim))
    out = wide.generate(child, z)
    assert out["image"].shape == (2, size, size, 3) and out["mask"].shape == (2, size, size, 1)
    assert wide.reconstruct(out["image"])["image"].shape == (2, size, size, 3)


def test_encoder_context_deepens_e_p_only(ae, tiny_config):
    deep = AutoEncoder(tiny_config.replace(encoder_context=2))
    deep.build_all()
    for name, network in ae.networks().items():
        grown = deep.networks()[name].count_params() > network.count_params()
        assert grown == (name == "E_p"), name
    out = deep.generate(tf.constant([0, 1], tf.int32), tf.zeros((2, tiny_config.z_dim)))
    assert deep.reconstruct(out["image"])["mask"].shape == out["mask"].shape
