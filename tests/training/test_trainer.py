"""Tests for onegan_tf/training/trainer.py (the OneGAN keras.Model): which variables each update
touches, the paper's gradient routing, the EMA, the phase schedule and the discriminator clones
(Sec. 4.3), the mixup draws (Eq. 9) and the ablation flags that act on them, the generation and
reconstruction paths' loss terms (Eq. 10-18) and the options that are not in the paper.

Runtime matters (2 shared CPU cores): one tiny OneGAN (`model`) is shared by the module. No test
depends on its weights being untrained; the ones that train it say so. Loss-ablation tests swap
`model.config` (the flags are read at call time, in one place each; see trainer.py).
"""

import time
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from gradient_taps import output_objective, per_example_abs_sum, tap_pre_images_and_bypasses

from onegan_tf import config as config_lib
from onegan_tf import data
from onegan_tf.nets import discriminators, encoders
from onegan_tf.nets.autoencoder import tree_parent_probabilities
from onegan_tf.serving import inference
from onegan_tf.training import loop, losses
from onegan_tf.training.trainer import (
    FusedAdam,
    OneGAN,
    active_paths,
    learning_rate_factor,
    phase_two_start,
)

BATCH = 4
GEN, FAKE, REAL = "generation", "fake", "real"


# --- helpers ----------------------------------------------------------------------------------
def _ids(variables):
    return {id(v) for v in variables}


def _snapshot(variables):
    return [v.numpy().copy() for v in variables]


def _changed(variables, before):
    """Per variable: did any element change?"""
    return [not np.array_equal(v.numpy(), b) for v, b in zip(variables, before, strict=True)]


def _random_batches(cfg, seed=0):
    rng = np.random.default_rng(seed)
    shape = (BATCH, cfg.image_size, cfg.image_size, 3)
    batch = {"image": rng.uniform(-1, 1, shape).astype(np.float32),
             "background": rng.uniform(-1, 1, shape).astype(np.float32)}
    return tf.data.Dataset.from_tensors(batch).repeat()


def _d_pairs_vars(model, path):
    d_bg, d_c = model.discriminator_pairs()[path]
    return d_bg.trainable_variables + d_c.trainable_variables


class _LogRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append({k: float(v) for k, v in (logs or {}).items()})


class _ApplySpy:
    """Wraps optimizer.apply_gradients (on the instance) and records the variables it receives.

    In a traced train_step this runs at trace time: it sees exactly the variable list that the
    compiled step applies on every iteration."""

    def __init__(self, optimizer):
        self.optimizer, self.calls = optimizer, []
        self.original = optimizer.apply_gradients

        def spy(grads_and_vars):
            pairs = list(grads_and_vars)
            self.calls.append([v for _, v in pairs])
            return self.original(pairs)

        optimizer.apply_gradients = spy

    def restore(self):
        del self.optimizer.apply_gradients  # back to the class method

    @property
    def variables(self):
        return [v for call in self.calls for v in call]


# --- variable partition (no training) --------------------------------------------------------
@pytest.fixture(scope="module")
def cfg(tiny_config):
    """The tiny config (batch BATCH), under the short name the tests below use."""
    assert tiny_config.batch_size == BATCH
    return tiny_config


def test_variable_sets_are_disjoint(tiny_model):
    model = tiny_model
    ae_ids = _ids(model.autoencoder.trainable_variables)
    ema_ids = _ids(model.ema.weights)
    d_c = model.object_discriminator
    info_ids = _ids(d_c.info_variables)
    generator_ids = _ids(model.generator_variables())
    assert generator_ids == ae_ids | info_ids
    assert not generator_ids & ema_ids
    all_d_ids = set()
    for path in ("generation", "fake", "real"):
        d_ids = _ids(model.discriminator_variables(path))
        d_bg, d_c_path = model.discriminator_pairs()[path]
        assert d_ids == _ids(d_bg.trainable_variables) | _ids(d_c_path.adversarial_variables)
        assert not d_ids & generator_ids, path
        assert not d_ids & ema_ids
        assert not d_ids & all_d_ids  # each path has its own pair
        all_d_ids |= d_ids
    # The G/E optimizer was built on exactly the generator-side list; each D optimizer on its
    # path's adversarial variables (Keras refuses to apply to a variable outside that list).
    assert _ids(model.g_optimizer._trainable_variables) == generator_ids
    for path, opt in model.d_optimizers().items():
        assert _ids(opt._trainable_variables) == _ids(model.discriminator_variables(path))
    # Every trainable variable of the training networks is trained by exactly one optimizer.
    trained = {id(v) for opt in [model.g_optimizer, *model.d_optimizers().values()]
               for v in opt._trainable_variables}
    expected = ae_ids | {id(v) for p in ("generation", "fake", "real")
                         for v in _d_pairs_vars(model, p)}
    # Clone info heads are never trained (only D_c's info head is, by the G/E loss).
    clone_info = {id(v) for p in ("fake", "real")
                  for v in model.discriminator_pairs()[p][1].info_variables}
    assert trained == expected - clone_info


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


@pytest.fixture(scope="module")
def model(cfg):
    """The module's OneGAN (built, compiled, untrained at first). Tests may assign its step,
    swap its config (monkeypatch) and apply updates to it."""
    keras.utils.set_random_seed(3)
    return loop.build_model(cfg)


def _fake_batch(model, cfg, seed):
    child = tf.random.stateless_uniform((BATCH,), (seed, 0), 0, cfg.num_children, tf.int32)
    z = tf.random.stateless_normal((BATCH, cfg.z_dim), (seed, 1))
    real = tf.random.stateless_uniform((BATCH, 32, 32, 3), (seed, 2), -1, 1)
    real_bg = tf.random.stateless_uniform((BATCH, 32, 32, 3), (seed, 3), -1, 1)
    return child, z, real, real_bg


def test_discriminator_update_touches_only_discriminators(model, cfg):
    child, z, real, real_bg = _fake_batch(model, cfg, 5)
    everything = model.trainable_variables + model.g_optimizer._trainable_variables
    everything = list({id(v): v for v in everything}.values())
    with tf.GradientTape() as tape:
        gen = model.autoencoder.generate(child, z, training=True)
        terms = model.discriminator_losses("generation", real, real_bg,
                                           tf.stop_gradient(gen["image"]),
                                           tf.stop_gradient(gen["background"]))
    assert set(terms) == {"D_generation/bgA", "D_generation/bgB", "D_generation/cA",
                          "D_generation/total"}
    expected_total = (cfg.bg_adv_weight * terms["D_generation/bgA"]
                      + terms["D_generation/bgB"] + terms["D_generation/cA"])
    np.testing.assert_allclose(float(terms["D_generation/total"]), float(expected_total),
                               rtol=1e-6)
    grads = tape.gradient(terms["D_generation/total"], everything)
    with_grad = {id(v) for v, g in zip(everything, grads) if g is not None}
    # The D loss reaches D_bg and D_c's adversarial part only: fakes are detached, the info
    # head is not in Eq. 10, the clones are other networks.
    d_vars = model.discriminator_variables("generation")
    assert with_grad == _ids(d_vars)
    # Applying the D optimizer as train_step does changes exactly those variables.
    before = _snapshot(everything)
    by_id = dict(zip(map(id, everything), grads))
    model.d_optimizer.apply_gradients([(by_id[id(v)], v) for v in d_vars])
    changed = {id(v) for v, c in zip(everything, _changed(everything, before)) if c}
    assert changed == _ids(d_vars)


def test_generator_update_leaves_discriminators_alone(model, cfg):
    child, z, _, _ = _fake_batch(model, cfg, 6)
    everything = list({id(v): v for v in model.trainable_variables
                       + model.g_optimizer._trainable_variables}.values())
    with tf.GradientTape(persistent=True) as tape:
        gen = model.autoencoder.generate(child, z, training=True)
        terms = model.generation_path(gen, child)
    grads = tape.gradient(terms["gen/total"], everything)
    with_grad = {id(v) for v, g in zip(everything, grads) if g is not None}
    adversarial = _ids(model.discriminator_variables("generation"))
    # The generator loss flows through D (so D's variables DO get gradients here) ...
    assert adversarial <= with_grad
    # ... which is why the G/E optimizer must not be given them: apply exactly as train_step.
    variables = model.generator_variables()
    g_grads = tape.gradient(terms["gen/total"], variables)
    del tape
    before = _snapshot(everything)
    present = [(g, v) for g, v in zip(g_grads, variables) if g is not None]
    model.g_optimizer.apply_gradients(present)
    changed = {id(v) for v, c in zip(everything, _changed(everything, before)) if c}
    assert changed == {id(v) for _, v in present}
    assert not changed & adversarial
    assert _ids(model.object_discriminator.info_variables) <= changed  # InfoGAN head: G side
    assert not changed & _ids(model.ema.weights)
    # Feeding a discriminator variable to the G/E optimizer is refused outright.
    d_var = model.discriminator_variables("generation")[0]
    with pytest.raises(ValueError, match="Unknown variable"):
        model.g_optimizer.apply_gradients([(tf.zeros_like(d_var), d_var)])


def test_generation_path_terms(model, cfg):
    child, z, _, _ = _fake_batch(model, cfg, 7)
    gen = model.autoencoder.generate(child, z, training=True)
    terms = {k: float(v) for k, v in model.generation_path(gen, child).items()}
    t = {k.split("/", 1)[1]: v for k, v in terms.items()}
    assert t["G"] == pytest.approx(cfg.bg_adv_weight * t["bgA"] + t["bgB"] + t["cA"], rel=1e-5)
    expected = (t["G"] + t["CE_parent"] + t["CE_child"] + t["CE_info"] + t["MSE_v_c"]
                + t["MSE_v_p"] + t["MSE_fg"] + t["MSE_bg"] + cfg.rv_weight * t["R_v"]
                + cfg.rm_weight * t["R_M"])
    assert t["total"] == pytest.approx(expected, rel=1e-5)
    assert t["mask_area"] == pytest.approx(float(tf.reduce_mean(gen["mask"])), rel=1e-5)
    # CE_parent uses the tied parent of each sampled child (phi_p = floor(phi_c N_P / N_C)).
    enc = model.autoencoder.encode(gen["image"], training=True)
    logits = enc["parent_logits"].numpy()
    parent = (child.numpy() * cfg.num_parents) // cfg.num_children
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert t["CE_parent"] == pytest.approx(-log_p[np.arange(BATCH), parent].mean(), rel=1e-4)


# --- the paper's gradient routing: Eq. 13 trains the encoders only, e-hat only Eq. 12 ---------
def _generator_networks(model):
    ae = model.autoencoder
    return [ae.background_pre, ae.background_generator, ae.foreground_pre, ae.shape_generator,
            ae.appearance_generator, ae.background_embedding, ae.parent_embedding,
            ae.child_embedding]


def _eq13(terms):
    return sum(terms[f"gen/MSE_{k}"] for k in ("v_c", "v_p", "fg", "bg"))


@pytest.mark.parametrize("deviation", [False, True])
def test_eq13_distances_reach_the_encoders_not_the_generators(cfg, deviation):
    model = loop.build_model(cfg.replace(eq13_to_generator=deviation))
    child, z, _, _ = _fake_batch(model, cfg, 8)
    generators = [v for net in _generator_networks(model) for v in net.trainable_variables]
    ae = model.autoencoder
    encoders = (ae.shape_encoder.trainable_variables + ae.style_encoder.trainable_variables
                + ae.background_encoder.trainable_variables)
    with tf.GradientTape(persistent=True) as tape:
        gen = ae.generate(child, z, training=True)
        terms = model.generation_path(gen, child)
        eq13, eq12 = _eq13(terms), terms["gen/CE_parent"] + terms["gen/CE_child"]
    eq13_gen = tape.gradient(eq13, generators)
    eq13_enc = tape.gradient(eq13, encoders)
    eq12_gen = tape.gradient(eq12, generators)
    del tape
    norm = lambda grads: sum(float(tf.reduce_sum(tf.abs(g))) for g in grads if g is not None)  # noqa: E731
    assert norm(eq13_enc) > 0
    if deviation:  # the old behaviour: Eq. 13 pulls the generators too
        assert norm(eq13_gen) > 0
    else:
        assert norm(eq13_gen) == 0
    assert norm(eq12_gen) > 0  # Eq. 12 keeps training the generators (InfoGAN-like)


@pytest.mark.parametrize("deviation", [False, True])
def test_reconstruction_gives_no_gradient_to_the_class_logits(cfg, deviation):
    model = loop.build_model(cfg.replace(straight_through=deviation))
    ae = model.autoencoder
    images = tf.random.stateless_uniform((BATCH, 32, 32, 3), (9, 0), -1, 1)
    heads = (ae.shape_encoder.logits.trainable_variables
             + ae.style_encoder.logits.trainable_variables)
    with tf.GradientTape() as tape:
        recon = model._reconstruct(images, 20)
        total = model.reconstruction_path("real", images, recon)["real/total"]
    grads = tape.gradient(total, heads)
    reached = [g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads]
    assert all(reached) if deviation else not any(reached)


def _real_mask_prior(recon, images, config):
    return losses.mask_regularizer(recon["mask"], config.mask_area_min, config.mask_area_max)


def _real_mask_prior_own_floor(recon, images, config):
    return losses.mask_regularizer(recon["mask"], 0.6, config.mask_area_max)


def _real_mask_edge(recon, images, config):
    return losses.edge_aware_boundary_length(recon["mask"], images)


@pytest.mark.parametrize("option, term, measure, floor, rel, seed", [
    # The area hinge at 0.6 is active on an untrained model's masks.
    (dict(real_mask_prior_weight=3.0, mask_area_min=0.6), "R_M", _real_mask_prior, 0.1, 1e-4, 13),
    # --real_mask_area_min replaces the generator's floor (0.05) on the real masks only.
    (dict(real_mask_prior_weight=3.0, mask_area_min=0.05, real_mask_area_min=0.6), "R_M",
     _real_mask_prior_own_floor, 0.1, 1e-4, 13),
    (dict(real_mask_edge_weight=0.5), "EDGE_M", _real_mask_edge, 0.0, 1e-3, 14),
])
def test_real_mask_priors_only_on_real_reconstructions_and_only_when_on(
        cfg, option, term, measure, floor, rel, seed):
    """--real_mask_prior_weight (L_RM of the predicted real masks) and --real_mask_edge_weight
    (their edge-aware boundary length against the real images) each add their term, times the
    weight, to the real path's total, and its gradient reaches the mask head and E_p; the fake
    path and the default (0) have no such term."""
    images = tf.random.stateless_uniform((BATCH, 32, 32, 3), (seed, 0), -1, 1)
    keras.utils.set_random_seed(seed - 8)
    config = cfg.replace(**option)
    weight = next(v for k, v in option.items() if k.endswith("_weight"))
    model = loop.build_model(config)
    ae = model.autoencoder
    mask_head = ae.appearance_generator.to_mask.trainable_variables
    e_p = ae.shape_encoder.trainable_variables
    with tf.GradientTape() as tape:
        recon = model._reconstruct(images, 20)
        terms = model.reconstruction_path(REAL, images, recon)
    value = float(measure(recon, images, config))
    assert value > floor
    assert float(terms[f"real/{term}"]) == pytest.approx(value, rel=1e-6)
    rest = (terms["real/G"] + terms["real/REC"] + terms["real/VAE"] + terms["real/PER"])
    assert float(terms["real/total"] - rest) == pytest.approx(weight * value, rel=rel)
    grads = [g is not None and float(tf.reduce_sum(tf.abs(g))) > 0
             for g in tape.gradient(terms[f"real/{term}"], mask_head + e_p)]
    assert all(grads[:len(mask_head)]) and any(grads[len(mask_head):])
    _, gen, targets = _generation_and_targets(model, config, seed=4)
    fake = model.reconstruction_path(FAKE, gen["image"], model._reconstruct(gen["image"], 10),
                                     targets)
    assert f"fake/{term}" not in fake
    off = loop.build_model(cfg)
    assert f"real/{term}" not in off.reconstruction_path(REAL, images,
                                                         off._reconstruct(images, 20))


def test_parent_agreement_trains_e_p_head_towards_the_tree_parent_of_e_c_on_real_images(cfg):
    """--parent_agreement_weight adds, on real images only, the cross entropy of E_p's parent
    logits against the code-tree parent distribution of E_c's child logits; its gradient
    reaches E_p's parent head and not E_c's child head (the target is held fixed)."""
    images = tf.random.stateless_uniform((BATCH, 32, 32, 3), (17, 0), -1, 1)
    keras.utils.set_random_seed(6)
    model = loop.build_model(cfg.replace(parent_agreement_weight=2.5))
    ae = model.autoencoder
    e_p_head = ae.shape_encoder.logits.trainable_variables
    e_c_head = ae.style_encoder.logits.trainable_variables
    with tf.GradientTape() as tape:
        recon = model._reconstruct(images, 20)
        terms = model.reconstruction_path(REAL, images, recon)
    enc = recon["encoded"]
    tree = tree_parent_probabilities(tf.nn.softmax(enc["child_logits"]), cfg.num_parents)
    expected = float(losses.soft_cross_entropy(enc["parent_logits"], tree))
    assert float(terms["real/CE_tree"]) == pytest.approx(expected, rel=1e-6)
    rest = (terms["real/G"] + terms["real/REC"] + terms["real/VAE"] + terms["real/PER"])
    assert float(terms["real/total"] - rest) == pytest.approx(2.5 * expected, rel=1e-4)
    grads = tape.gradient(terms["real/CE_tree"], e_p_head + e_c_head)
    assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0
               for g in grads[:len(e_p_head)])
    assert all(g is None or float(tf.reduce_sum(tf.abs(g))) == 0
               for g in grads[len(e_p_head):])
    _, gen, targets = _generation_and_targets(model, cfg, seed=4)
    fake = model.reconstruction_path(FAKE, gen["image"], model._reconstruct(gen["image"], 10),
                                     targets)
    assert "fake/CE_tree" not in fake
    off = loop.build_model(cfg)
    assert "real/CE_tree" not in off.reconstruction_path(REAL, images,
                                                         off._reconstruct(images, 20))


def test_fake_mask_weight_scales_only_the_mask_term_of_fake_reconstruction(cfg):
    """--fake_mask_weight multiplies |I_m - I_m-hat| inside the fake path's L_REC (the image
    and background terms keep weight 1) and so the gradient it sends to E_p; real images have
    no true mask and no such term."""
    keras.utils.set_random_seed(8)
    model = loop.build_model(cfg.replace(fake_mask_weight=4.0))
    _, gen, targets = _generation_and_targets(model, cfg, seed=5)
    e_p = model.autoencoder.shape_encoder.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        recon = model._reconstruct(gen["image"], 10)
        fake = model.reconstruction_path(FAKE, gen["image"], recon, targets)
        mask_l1 = losses.mean_absolute_error(targets["mask"], recon["mask"])
        rest = (losses.mean_absolute_error(gen["image"], recon["image"])
                + losses.mean_absolute_error(targets["background"], recon["background"]))
    assert float(fake["fake/REC_mask"]) == pytest.approx(float(mask_l1), rel=1e-6)
    assert float(fake["fake/REC"]) == pytest.approx(float(rest) + 4.0 * float(mask_l1),
                                                    rel=1e-5)
    def grads(target):  # None (not on the path) as zeros
        return [np.zeros(v.shape) if g is None else np.asarray(g)
                for g, v in zip(tape.gradient(target, e_p), e_p)]

    from_mask = grads(mask_l1)
    for total, mask, other in zip(grads(fake["fake/REC"]), from_mask, grads(rest)):
        np.testing.assert_allclose(total, other + 4.0 * mask, rtol=1e-3, atol=1e-6)
    assert any(np.abs(g).sum() > 0 for g in from_mask)
    images = tf.random.stateless_uniform((BATCH, 32, 32, 3), (19, 0), -1, 1)
    assert "real/REC_mask" not in model.reconstruction_path(REAL, images,
                                                            model._reconstruct(images, 20))


def test_posed_object_gets_the_adversarial_gradient_and_trains(cfg):
    """With the pose options, D_c's verdict on the moved object still reaches every variable of
    the object generators (through the bilinear warp), and fit() runs a finite step."""
    keras.utils.set_random_seed(3)
    posed = cfg.replace(pose_rotation=180.0, pose_scale=1.35, pose_shift=0.25)
    model = loop.build_model(posed)
    ae = model.autoencoder
    child, z, _, _ = _fake_batch(model, posed, 4)
    objects = (ae.foreground_pre.trainable_variables + ae.shape_generator.trainable_variables
               + ae.appearance_generator.trainable_variables)
    with tf.GradientTape() as tape:
        gen = ae.generate(child, z, training=True)
        adversarial = model.adversarial_losses("generation", gen["image"], gen["background"])
    grads = tape.gradient(adversarial[0]["cA"], objects)
    assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)
    recorder = _LogRecorder()
    model.fit(_random_batches(posed), steps_per_epoch=2, epochs=1, verbose=0,
              callbacks=[recorder])
    assert int(model.step) == 2
    assert all(np.isfinite(v) for logs in recorder.batches for v in logs.values())


# --- one real train_step (Phase I) and then Phase II ------------------------------------------
@pytest.fixture(scope="module")
def phase_one(cfg):
    """A fresh model, every weight snapshotted, then ONE real train_step through fit()."""
    keras.utils.set_random_seed(2)
    model = loop.build_model(cfg)
    assert model.paths == ("generation",)
    nets = model.networks()
    before = {name: _snapshot(net.weights) for name, net in nets.items()}
    before["ema"] = _snapshot(model.ema.weights)
    before["autoencoder"] = _snapshot(model.autoencoder.weights)
    spies = {"g": _ApplySpy(model.g_optimizer), "d": _ApplySpy(model.d_optimizer)}
    recorder = _LogRecorder()
    try:
        model.fit(_random_batches(cfg), steps_per_epoch=1, epochs=1, verbose=0,
                  callbacks=[recorder])
    finally:
        for spy in spies.values():
            spy.restore()
    return types.SimpleNamespace(model=model, before=before, spies=spies, logs=recorder.batches)


def test_train_step_phase_one_logs(phase_one):
    model = phase_one.model
    assert int(model.step) == 1 and int(model.d_optimizer.iterations) == 1
    (logs,) = phase_one.logs
    assert {k.split("/")[0] for k in logs if "/" in k} == {"gen", "D_generation"}
    assert all(np.isfinite(v) for v in logs.values())


def test_train_step_optimizers_receive_the_right_variables(phase_one):
    model = phase_one.model
    g_vars = phase_one.spies["g"].variables
    d_vars = phase_one.spies["d"].variables
    assert len(phase_one.spies["g"].calls) == 1 and len(phase_one.spies["d"].calls) == 1
    assert _ids(g_vars) <= _ids(model.generator_variables())
    for path in ("generation", "fake", "real"):
        assert not _ids(g_vars) & _ids(model.discriminator_variables(path))
    assert _ids(d_vars) == _ids(model.discriminator_variables("generation"))
    # Only the Gaussian heads that Phase I never samples from go without a gradient.
    skipped = [v for v in model.generator_variables() if id(v) not in _ids(g_vars)]
    assert skipped, "Phase I should leave the log-variance/z heads without gradient"
    for v in skipped:
        assert any(s in v.path for s in ("log_var", "z_mean")), v.path


def test_train_step_phase_one_changes(phase_one):
    model, before = phase_one.model, phase_one.before
    nets = model.networks()
    # D_bg and D_c (adversarial part) moved; their clones did not (Phase I).
    for name in ("D_bg", "D_c"):
        net = nets[name]
        moved = dict(zip(map(id, net.weights), _changed(net.weights, before[name])))
        adversarial = (net.trainable_variables if name == "D_bg"
                       else net.adversarial_variables)
        assert all(moved[id(v)] for v in adversarial), name
    for name in ("D_bg_fake", "D_c_fake", "D_bg_real", "D_c_real"):
        assert not any(_changed(nets[name].weights, before[name])), name
    assert int(model.d_optimizer_fake.iterations) == 0
    assert int(model.d_optimizer_real.iterations) == 0
    # D_c's info head is trained (by the G/E optimizer).
    d_c = nets["D_c"]
    moved = dict(zip(map(id, d_c.weights), _changed(d_c.weights, before["D_c"])))
    assert all(moved[id(v)] for v in d_c.info_variables)
    # Every autoencoder variable that received a gradient changed, the others did not.
    ae = model.autoencoder
    received = _ids(phase_one.spies["g"].variables)
    for v, changed in zip(ae.weights, _changed(ae.weights, before["autoencoder"])):
        assert changed == (id(v) in received), v.path


def test_ema_moves_toward_the_trained_weights(phase_one):
    model = phase_one.model
    ema_before, ae_before = phase_one.before["ema"], phase_one.before["autoencoder"]
    np.testing.assert_array_equal(ema_before[0], ae_before[0])  # EMA starts as a copy
    step = int(model.step)
    decay = min(model.config.ema_decay, (1.0 + step) / (10.0 + step))  # warm-up of the EMA
    moved = 0
    for e, a, e0 in zip(model.ema.weights, model.autoencoder.weights, ema_before, strict=True):
        e, a = e.numpy(), a.numpy()
        np.testing.assert_allclose(e, decay * e0 + (1.0 - decay) * a, rtol=1e-5, atol=1e-7)
        if not np.array_equal(a, e0):
            moved += 1
            # Strictly between the old EMA and the new weights.
            assert np.abs(e - a).sum() < np.abs(e0 - a).sum()
            assert np.abs(e - e0).sum() > 0
    assert moved > 0


@pytest.fixture(scope="module")
def phase_two(phase_one, cfg):
    """Continues phase_one's model: loads the clones, then 20 steps of all three paths on the
    real training pipeline."""
    model = phase_one.model
    pairs = model.discriminator_pairs()
    differed_before_load = any(
        not np.array_equal(a, b)
        for a, b in zip(pairs["generation"][0].get_weights(), pairs["fake"][0].get_weights()))
    model.load_discriminator_clones()
    loaded = {path: [_snapshot(net.weights) for net in pairs[path]] for path in pairs}
    model.set_paths(("generation", "fake", "real"))
    assert model.train_function is None  # the new path set retraces train_step
    recorder = _LogRecorder()
    model.fit(data.training_dataset(cfg, start_step=1), steps_per_epoch=20, epochs=1,
              verbose=0, callbacks=[recorder])
    return types.SimpleNamespace(model=model, loaded=loaded, logs=recorder.batches,
                                 differed_before_load=differed_before_load)


def test_load_discriminator_clones_copies_weights(phase_two):
    assert phase_two.differed_before_load
    generation = phase_two.loaded["generation"]
    for path in ("fake", "real"):
        for original, clone in zip(generation, phase_two.loaded[path]):
            for a, b in zip(original, clone, strict=True):
                np.testing.assert_array_equal(a, b)
    assert int(phase_two.model.clones_loaded) == 1


def test_phase_two_losses_finite_for_every_step(phase_two):
    logs = phase_two.logs
    assert len(logs) == 20
    prefixes = {k.split("/")[0] for k in logs[0] if "/" in k}
    assert prefixes == {"gen", "fake", "real", "D_generation", "D_fake", "D_real"}
    for step, record in enumerate(logs):
        bad = {k: v for k, v in record.items() if not np.isfinite(v)}
        assert not bad, f"non-finite at step {step}: {bad}"
    for record in logs:
        assert record["total"] == pytest.approx(
            record["gen/total"] + record["fake/total"] + record["real/total"], rel=1e-4)


def test_clones_train_separately_in_phase_two(phase_two):
    model = phase_two.model
    assert int(model.step) == 21
    assert int(model.d_optimizer.iterations) == 21
    assert int(model.d_optimizer_fake.iterations) == 20
    assert int(model.d_optimizer_real.iterations) == 20
    pairs = model.discriminator_pairs()
    for path, nets in pairs.items():  # every pair trained since the clones were loaded
        now = [_snapshot(net.weights) for net in nets]
        assert any(not np.array_equal(a, b) for net_now, net_loaded
                   in zip(now, phase_two.loaded[path]) for a, b in zip(net_now, net_loaded)), path
    for i in range(2):  # D_bg, D_c
        weights = {p: pairs[p][i].get_weights() for p in pairs}
        for p, q in (("generation", "fake"), ("generation", "real"), ("fake", "real")):
            assert any(not np.array_equal(a, b) for a, b in zip(weights[p], weights[q])), (p, q)
    # Clone info heads are not trained by anyone: still the values copied at load time.
    for path in ("fake", "real"):
        d_c = pairs[path][1]
        loaded = dict(zip(map(id, d_c.weights), phase_two.loaded[path][1]))
        for v in d_c.info_variables:
            np.testing.assert_array_equal(v.numpy(), loaded[id(v)])


# --- schedule ---------------------------------------------------------------------------------
def test_active_paths_paper_schedule():
    cfg = config_lib.preset("cub")
    assert active_paths(cfg, cfg.phase1_steps - 1) == ("generation",)
    assert active_paths(cfg, cfg.fake_recon_start) == ("generation", "fake")
    assert active_paths(cfg, cfg.real_recon_start - 1) == ("generation", "fake")
    assert active_paths(cfg, cfg.real_recon_start) == ("generation", "fake", "real")
    assert phase_two_start(cfg) == 200_000


def test_schedule_ablations_active_paths():
    tiny = config_lib.preset("tiny")  # Phase II (clones + fake) at 10, real at 20
    no_real = tiny.replace(real_recon=False)
    assert [active_paths(no_real, s) for s in (9, 10, 20, 10**6)] == [
        (GEN,), (GEN, FAKE), (GEN, FAKE), (GEN, FAKE)]
    assert phase_two_start(no_real) == 10
    only = tiny.replace(phase1_only=True)
    assert {active_paths(only, s) for s in (*range(0, 40), 10**6)} == {(GEN,)}
    assert phase_two_start(only) is None
    assert loop.schedule_boundaries(only) == [10, 20, 30]  # harmless: paths never change
    flat = tiny.replace(multi_phase=False)
    assert {active_paths(flat, s) for s in range(0, 40)} == {(GEN, FAKE, REAL)}
    assert phase_two_start(flat) == 0
    assert {active_paths(flat.replace(real_recon=False), s) for s in range(40)} == {(GEN, FAKE)}


# --- mixup draws (Eq. 9) and the ablations that fix them ------------------------------------
def _at_step(model, step):
    model.step.assign(step)  # model.step (the global step) seeds every draw


def _generation_and_targets(model, cfg, seed=0):
    """A generation-path batch and the targets the fake reconstruction is scored against."""
    child = tf.random.stateless_uniform((BATCH,), (seed, 0), 0, cfg.num_children, tf.int32)
    z = tf.random.stateless_normal((BATCH, cfg.z_dim), (seed, 1))
    gen = model.autoencoder.generate(child, z, training=True)
    targets = {"v_p": gen["v_p"], "v_c": gen["v_c"], "background": gen["background"],
               "mask": gen["mask"]}
    return child, gen, targets


def test_sample_betas_bounds_per_example_and_per_step(model):
    _at_step(model, 5)
    betas = {k: v.numpy() for k, v in model.sample_betas(64, 13).items()}
    for key in ("beta1", "beta2"):  # U[0, 1) on (v_p, v_c)
        assert betas[key].shape == (64,)
        assert betas[key].min() >= 0.0 and betas[key].max() < 1.0
        assert betas[key].min() < 0.25 and betas[key].max() > 0.75  # spans the range
        assert betas[key].std() > 0.1
    for key in ("beta3", "beta4"):  # U[0.5, 1) on (A_fg, B_fg), (A_bg, B_bg)
        assert betas[key].shape == (64,)
        assert betas[key].min() >= 0.5 and betas[key].max() < 1.0
        assert betas[key].min() < 0.625 and betas[key].max() > 0.875
    for key, b in betas.items():
        assert len(np.unique(b)) > 32, f"{key}: not one draw per example"
    for a, b in (("beta1", "beta2"), ("beta3", "beta4")):
        assert not np.allclose(betas[a], betas[b])  # independent draws per mixup
    # Fresh draws at the next step; the same draws when a step is replayed (resume).
    _at_step(model, 6)
    later = {k: v.numpy() for k, v in model.sample_betas(64, 13).items()}
    for key in betas:
        assert not np.allclose(later[key], betas[key]), key
    _at_step(model, 5)
    for key, v in model.sample_betas(64, 13).items():
        np.testing.assert_array_equal(v.numpy(), betas[key])
    # The fake (site 13) and real (site 23) reconstructions draw independently.
    real_path = model.sample_betas(64, 23)["beta1"].numpy()
    assert not np.allclose(real_path, betas["beta1"])


def test_no_bypass_ablation_cuts_the_bypasses(model, cfg, held_out_images, monkeypatch):
    no_bypass = cfg.replace(use_bypass=False)
    monkeypatch.setattr(model, "config", no_bypass)
    _at_step(model, 3)
    betas = model.sample_betas(BATCH, 23)
    np.testing.assert_array_equal(betas["beta3"].numpy(), 0.0)
    np.testing.assert_array_equal(betas["beta4"].numpy(), 0.0)
    assert np.all(betas["beta1"].numpy() < 1)  # the vector mixup still runs
    # The training reconstruction (sampled noise and betas) ignores B_fg, B_bg entirely.
    taps = tap_pre_images_and_bypasses(monkeypatch, model.autoencoder)
    with tf.GradientTape() as tape:
        recon = model._reconstruct(held_out_images, 20)
        terms = model.reconstruction_path(REAL, held_out_images, recon)
        objective = terms["real/total"] + output_objective(recon)
    grads = dict(zip(taps, tape.gradient(objective, list(taps.values()))))
    for name in ("B_fg", "B_bg"):
        assert grads[name] is None or np.all(grads[name].numpy() == 0), name
    for name in ("A_fg", "A_bg"):
        assert np.all(per_example_abs_sum(grads[name]) > 0), name
    # Inference on a no-bypass model uses the pre-images too.
    monkeypatch.setattr(model.autoencoder, "config", no_bypass)
    fixed = inference.inference_betas(model.autoencoder, BATCH)
    np.testing.assert_array_equal(fixed["beta3"].numpy(), 0.0)
    np.testing.assert_array_equal(fixed["beta4"].numpy(), 0.0)


@pytest.mark.parametrize("flag, constant_keys, value", [
    ("mixup_vectors", ("beta1", "beta2"), 1.0),
    ("mixup_tensors", ("beta3", "beta4"), 1.0),
])
def test_mixup_ablations_fix_their_betas(model, cfg, monkeypatch, flag, constant_keys, value):
    monkeypatch.setattr(model, "config", cfg.replace(**{flag: False}))
    _at_step(model, 4)
    betas = {k: v.numpy() for k, v in model.sample_betas(16, 13).items()}
    for key, b in betas.items():
        if key in constant_keys:
            np.testing.assert_array_equal(b, value, err_msg=key)
        else:
            assert len(np.unique(b)) == 16, f"{key} should still be sampled"
    # The no-bypass ablation overrides the tensor mixup: the pre-images, never the bypasses.
    monkeypatch.setattr(model, "config", cfg.replace(**{flag: False}, use_bypass=False))
    betas = model.sample_betas(16, 13)
    np.testing.assert_array_equal(betas["beta3"].numpy(), 0.0)


def _recon_terms(model, path, images, targets, seed_step=2):
    _at_step(model, seed_step)
    recon = model._reconstruct(images, 10 if path == FAKE else 20)
    return {k.split("/", 1)[1]: float(v)
            for k, v in model.reconstruction_path(path, images, recon, targets).items()}


@pytest.mark.parametrize("path", [FAKE, REAL])
def test_vae_and_per_ablations_drop_their_terms(model, cfg, monkeypatch, path):
    _, gen, targets = _generation_and_targets(model, cfg)
    images = gen["image"]
    if path == REAL:
        targets = None
    results = {}
    for use_vae in (True, False):
        for use_per in (True, False):
            monkeypatch.setattr(model, "config",
                                cfg.replace(use_vae_loss=use_vae, use_per_loss=use_per))
            t = _recon_terms(model, path, images, targets)
            assert t["VAE"] > 0 and t["PER"] > 0 and t["REC"] > 0  # computed and logged anyway
            expected = t["G"] + t["REC"] + (t["VAE"] if use_vae else 0) + (
                t["PER"] if use_per else 0)
            assert t["total"] == pytest.approx(expected, rel=1e-5), (use_vae, use_per)
            results[use_vae, use_per] = t
    full = results[True, True]
    for (use_vae, use_per), t in results.items():  # same draws: only the total changes
        assert t["REC"] == pytest.approx(full["REC"], rel=1e-6)
        dropped = (0 if use_vae else full["VAE"]) + (0 if use_per else full["PER"])
        assert t["total"] == pytest.approx(full["total"] - dropped, rel=1e-5)


def test_rm_ablation_drops_the_mask_regularizer(model, cfg, monkeypatch):
    child, gen, _ = _generation_and_targets(model, cfg, seed=1)
    totals = {}
    for use_rm in (True, False):
        monkeypatch.setattr(model, "config", cfg.replace(use_rm_loss=use_rm))
        t = {k.split("/", 1)[1]: float(v) for k, v in model.generation_path(gen, child).items()}
        assert t["R_M"] > 0
        others = (t["G"] + t["CE_parent"] + t["CE_child"] + t["CE_info"] + t["MSE_v_c"]
                  + t["MSE_v_p"] + t["MSE_fg"] + t["MSE_bg"] + cfg.rv_weight * t["R_v"])
        expected = others + (cfg.rm_weight * t["R_M"] if use_rm else 0.0)
        assert t["total"] == pytest.approx(expected, rel=1e-5), use_rm
        totals[use_rm] = t
    assert totals[True]["total"] - totals[False]["total"] == pytest.approx(
        cfg.rm_weight * totals[True]["R_M"], rel=1e-4)


def test_real_mask_area_min_leaves_the_generated_masks_floor(model, cfg, monkeypatch):
    """--real_mask_area_min acts on the real masks only: L_RM of the generated masks keeps
    --mask_area_min (here 0.6, active on an untrained generator's masks)."""
    child, gen, _ = _generation_and_targets(model, cfg, seed=3)
    values = []
    for real_floor in (-1.0, 0.0):
        monkeypatch.setattr(model, "config", cfg.replace(
            mask_area_min=0.6, real_mask_area_min=real_floor, real_mask_prior_weight=1.0))
        values.append(float(model.generation_path(gen, child)["gen/R_M"]))
    expected = float(losses.mask_regularizer(gen["mask"], 0.6, cfg.mask_area_max))
    assert values == pytest.approx([expected, expected], rel=1e-6)
    assert expected > float(losses.mask_regularizer(gen["mask"], 0.0, cfg.mask_area_max))


# --- Eq. 15-17 terms; overfitting the real reconstruction ---------------------------------------
def test_fake_and_real_reconstruction_terms(model, cfg):
    _, gen, targets = _generation_and_targets(model, cfg, seed=2)
    images = gen["image"]
    d_bg, d_c = model.discriminator_pairs()[FAKE]
    _at_step(model, 9)
    recon = model._reconstruct(images, 10)
    enc = recon["encoded"]
    fake = {k: float(v) for k, v in model.reconstruction_path(FAKE, images, recon,
                                                              targets).items()}
    image_l1 = float(losses.mean_absolute_error(images, recon["image"]))
    bg_l1 = float(losses.mean_absolute_error(targets["background"], recon["background"]))
    mask_l1 = float(losses.mean_absolute_error(targets["mask"], recon["mask"]))
    assert bg_l1 > 0 and mask_l1 > 0
    # Eq. 16, fake: image + background + mask L1.
    assert fake["fake/REC"] == pytest.approx(image_l1 + bg_l1 + mask_l1, rel=1e-5)
    # Eq. 17, fake: D_cC on the images + D_bgC on the backgrounds (this path's clones).
    per_c = float(losses.perceptual_loss(d_c(images)["features"],
                                         d_c(recon["image"])["features"]))
    per_bg = float(losses.perceptual_loss(d_bg(targets["background"])["features"],
                                          d_bg(recon["background"])["features"]))
    assert per_bg > 0
    assert fake["fake/PER"] == pytest.approx(per_c + per_bg, rel=1e-5)
    # Eq. 15, fake: the KL targets are the known codes of the generation path.
    kl = (losses.gaussian_kl(enc["parent_mean"], enc["parent_log_var"], targets["v_p"])
          + losses.gaussian_kl(enc["child_mean"], enc["child_log_var"], targets["v_c"])
          + losses.gaussian_kl(enc["z_mean"], enc["z_log_var"]))
    assert fake["fake/VAE"] == pytest.approx(float(kl), rel=1e-5)

    # The same image as a real one (targets=None): no background/mask/D_bg terms, and the KL
    # targets are the embeddings of the predicted classes.
    real = {k: float(v) for k, v in model.reconstruction_path(REAL, images, recon).items()}
    assert real["real/REC"] == pytest.approx(image_l1, rel=1e-5)
    d_c_real = model.discriminator_pairs()[REAL][1]
    per_real = float(losses.perceptual_loss(d_c_real(images)["features"],
                                            d_c_real(recon["image"])["features"]))
    assert real["real/PER"] == pytest.approx(per_real, rel=1e-5)
    kl_real = (losses.gaussian_kl(enc["parent_mean"], enc["parent_log_var"], recon["v_p"])
               + losses.gaussian_kl(enc["child_mean"], enc["child_log_var"], recon["v_c"])
               + losses.gaussian_kl(enc["z_mean"], enc["z_log_var"]))
    assert real["real/VAE"] == pytest.approx(float(kl_real), rel=1e-5)
    # Eq. 18: the path total adds its adversarial term G.
    for prefix, t in (("fake", fake), ("real", real)):
        assert t[f"{prefix}/total"] == pytest.approx(
            t[f"{prefix}/G"] + t[f"{prefix}/REC"] + t[f"{prefix}/VAE"] + t[f"{prefix}/PER"],
            rel=1e-5)


def test_real_reconstruction_overfits_eight_images(cfg, model):
    """Only the real-image reconstruction L1 (Eq. 16), with the training-time betas and
    noise, on 8 fixed images and the model's own G/E optimizer (Adam 2e-4): the deterministic
    (inference) reconstruction L1 halves within a few dozen steps (20 to 50 measured)."""
    images = data.evaluation_batch(cfg, 8)["image"]
    ae = model.autoencoder
    variables = ae.trainable_variables
    optimizer = model.g_optimizer  # its step advances: fresh betas and noise at every step

    @tf.function(autograph=False)  # no tensor-dependent Python control flow to convert
    def step():
        with tf.GradientTape() as tape:
            recon = model._reconstruct(images, 20)
            loss = model.reconstruction_path(REAL, images, recon)["real/REC"]
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
        return loss

    def inference_l1():
        out = inference.reconstruct(ae, images)["image"]
        return float(losses.mean_absolute_error(images, out))

    start, began = inference_l1(), time.time()
    history = [start]
    for _ in range(15):  # at most 150 steps
        for _ in range(10):
            loss = step()
        history.append(inference_l1())
        if history[-1] < start / 2:
            break
    steps = 10 * (len(history) - 1)
    print(f"real reconstruction L1 {start:.3f} -> {history[-1]:.3f} in {steps} steps "
          f"({time.time() - began:.1f}s)")
    assert np.isfinite(float(loss))
    assert history[-1] < start / 2, history


# --- options that are not in the paper ---------------------------------------------------------
def test_mode_seeking_term_known_values():
    from onegan_tf.training.trainer import mode_seeking_term

    a = tf.zeros((2, 4, 4, 3))
    images = tf.concat([a, a + 0.5], 0)  # pairs (0, 2), (1, 3) differ by 0.5 everywhere
    z = tf.concat([tf.zeros((2, 8)), tf.ones((2, 8))], 0)  # |z_a - z_b| = 1
    assert float(mode_seeking_term(images, z)) == pytest.approx(1.0 / (0.5 + 1e-5), rel=1e-5)
    # z ignored (identical images for one code): the term is at its maximum, 1e5.
    same = tf.concat([a, a], 0)
    assert float(mode_seeking_term(same, z)) == pytest.approx(1e5, rel=1e-5)
    # An odd batch: the middle example has no partner.
    odd = tf.concat([a[:1], tf.fill((1, 4, 4, 3), 9.0), a[:1] + 0.25], 0)
    assert float(mode_seeking_term(odd, tf.concat([z[:1], z[:1], z[2:3]], 0))) == \
        pytest.approx(1.0 / (0.25 + 1e-5), rel=1e-5)


def test_mode_seeking_pairs_codes_and_reaches_the_generators(cfg):
    model = loop.build_model(cfg.replace(mode_seeking_weight=1.0))
    child, z, _, _ = _fake_batch(model, cfg, 10)
    child = tf.concat([child[:BATCH // 2], child[:BATCH // 2]], 0)
    generators = [v for net in _generator_networks(model) for v in net.trainable_variables]
    with tf.GradientTape() as tape:
        gen = model.autoencoder.generate(child, z, training=True)
        terms = model.generation_path(gen, child, z)
        ms = terms["gen/MS"]
    grads = tape.gradient(ms, generators)
    assert any(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)
    base = config_lib.preset("tiny", batch_size=BATCH)
    assert "gen/MS" not in model.__class__(base).generation_path(gen, child, z)


def test_mask_boundary_prior_trains_the_mask_generator_only_when_on(cfg):
    """--mask_boundary_weight adds the boundary length of the generated masks, times the
    weight, to the generation path's total; its gradient reaches the mask generator."""
    model = loop.build_model(cfg.replace(mask_boundary_weight=0.5))
    child, z, _, _ = _fake_batch(model, cfg, 12)
    mask_net = model.autoencoder.appearance_generator.to_mask.trainable_variables
    with tf.GradientTape() as tape:
        gen = model.autoencoder.generate(child, z, training=True)
        terms = model.generation_path(gen, child, z)
    expected = float(losses.mask_boundary_length(gen["mask"]))
    assert expected > 0
    assert float(terms["gen/TV_M"]) == pytest.approx(expected, rel=1e-6)
    rest = sum(terms[f"gen/{k}"] for k in ("G", "CE_parent", "CE_child", "CE_info", "MSE_v_c",
                                             "MSE_v_p", "MSE_fg", "MSE_bg"))
    rest += cfg.rv_weight * terms["gen/R_v"] + cfg.rm_weight * terms["gen/R_M"]
    assert float(terms["gen/total"] - rest) == pytest.approx(0.5 * expected, rel=1e-3)
    assert "gen/TV_M" not in model.__class__(cfg).generation_path(gen, child, z)
    grads = tape.gradient(terms["gen/TV_M"], mask_net)
    assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)


def test_mask_parent_head_is_trained_with_the_generators_only_when_on(cfg):
    off = loop.build_model(cfg)
    assert off.mask_parent_head is None and "Q_p" not in off.networks()
    model = loop.build_model(cfg.replace(mask_parent_info_weight=1.0))
    head = model.mask_parent_head
    assert _ids(head.trainable_variables) <= _ids(model.generator_variables())
    child, z, _, _ = _fake_batch(model, cfg, 11)
    with tf.GradientTape() as tape:
        gen = model.autoencoder.generate(child, z, training=True)
        ce = model.generation_path(gen, child, z)["gen/CE_mask_parent"]
    mask_net = model.autoencoder.appearance_generator.to_mask.trainable_variables
    grads = tape.gradient(ce, head.trainable_variables + mask_net)
    assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)


def test_mask_discriminator_routing_only_when_on(cfg):
    """D_m learns from the D update (real = the EMA model's masks of real images, without
    gradient; fake = detached generated masks); its adversarial term trains the mask generator,
    and D_m is not among the variables the generator update applies to."""
    off = loop.build_model(cfg)
    assert off.mask_discriminator is None and "D_m" not in off.networks()
    model = loop.build_model(cfg.replace(mask_adversarial_weight=1.0))
    d_m = model.mask_discriminator
    assert _ids(d_m.trainable_variables) <= _ids(model.discriminator_variables("generation"))
    assert not _ids(d_m.trainable_variables) & _ids(model.generator_variables())
    child, z, real, _ = _fake_batch(model, cfg, 12)
    everything = list({id(v): v for v in model.trainable_variables
                       + model.ema.weights}.values())
    with tf.GradientTape(persistent=True) as tape:
        gen = model.autoencoder.generate(child, z, training=True)
        d_loss = model.mask_discriminator_loss(real, gen["mask"])
        g_loss = model.generation_path(gen, child, z)["gen/M_adv"]
    d_grads = tape.gradient(d_loss, everything)
    assert {id(v) for v, g in zip(everything, d_grads) if g is not None} == _ids(
        d_m.trainable_variables)
    g_grads = dict(zip(map(id, everything), tape.gradient(g_loss, everything)))
    mask_net = model.autoencoder.appearance_generator.to_mask.trainable_variables
    assert all(g_grads[id(v)] is not None and float(tf.reduce_sum(tf.abs(g_grads[id(v)]))) > 0
               for v in mask_net)
    # The real masks are the EMA model's inference masks of the real images.
    betas = {k: tf.ones((BATCH,)) for k in ("beta1", "beta2", "beta3", "beta4")}
    masks = model.ema.reconstruct(real, betas)["mask"]
    expected = losses.discriminator_loss(d_m(masks), d_m(gen["mask"]))
    np.testing.assert_allclose(float(d_loss), float(expected), rtol=1e-5)


def _reached(grads_by_id, variables):
    """Per variable: did the gradient (dict id -> gradient) reach it with a nonzero value?"""
    return [grads_by_id[id(v)] is not None and float(tf.reduce_sum(tf.abs(grads_by_id[id(v)]))) > 0
            for v in variables]


def _real_mask_term_gradients(model, tape, terms, term, expected, weight):
    """Checks that the real path's `term` has the value `expected`, enters its total at
    `weight` and reaches the mask head and E_p; returns its gradients by variable id."""
    assert float(terms[f"real/{term}"]) == pytest.approx(expected, rel=1e-5)
    rest = (terms["real/G"] + terms["real/REC"] + terms["real/VAE"] + terms["real/PER"])
    assert float(terms["real/total"] - rest) == pytest.approx(weight * expected, rel=1e-4)
    everything = list({id(v): v for v in model.trainable_variables}.values())
    grads = dict(zip(map(id, everything), tape.gradient(terms[f"real/{term}"], everything)))
    ae = model.autoencoder
    assert all(_reached(grads, ae.appearance_generator.to_mask.trainable_variables))
    assert any(_reached(grads, ae.shape_encoder.trainable_variables))
    return grads


def _only_on_real_images(model, cfg, term, images):
    """The fake path of `model` and the real path of a default model have no `term`."""
    _, gen, targets = _generation_and_targets(model, cfg, seed=4)
    fake = model.reconstruction_path(FAKE, gen["image"], model._reconstruct(gen["image"], 10),
                                     targets)
    off = loop.build_model(cfg)
    real = off.reconstruction_path(REAL, images, off._reconstruct(images, 20))
    return f"fake/{term}" not in fake and f"real/{term}" not in real


def test_real_paste_trains_the_masks_against_the_real_path_d_c_only_when_on(cfg):
    """--real_paste_weight: the object a real image's predicted mask cuts out, pasted over a
    clean real background, is judged by the real path's D_c. The generator side's term (times
    the weight, in the real path's total) reaches the mask head and E_p, not the background
    networks; D's side (real images real, pastes of detached masks fake) reaches only that D_c.
    Generated images get no such term, and the default (0) adds none."""
    images = tf.random.stateless_uniform((BATCH, 32, 32, 3), (21, 0), -1, 1)
    backgrounds = tf.random.stateless_uniform((BATCH, 32, 32, 3), (21, 1), -1, 1)
    keras.utils.set_random_seed(9)
    model = loop.build_model(cfg.replace(real_paste_weight=1.5))
    ae = model.autoencoder
    _, d_c = model.discriminator_pairs()[REAL]
    ones, zeros = tf.ones((BATCH, 32, 32, 1)), tf.zeros((BATCH, 32, 32, 1))
    np.testing.assert_allclose(model.paste(images, backgrounds, ones), images, atol=1e-6)
    np.testing.assert_allclose(model.paste(images, backgrounds, zeros), backgrounds, atol=1e-6)
    everything = list({id(v): v for v in model.trainable_variables}.values())
    with tf.GradientTape(persistent=True) as tape:
        recon = model._reconstruct(images, 20)
        terms = model.reconstruction_path(REAL, images, recon, real_backgrounds=backgrounds)
        d_terms = model.discriminator_losses(
            REAL, images, backgrounds, tf.stop_gradient(recon["image"]),
            tf.stop_gradient(recon["background"]),
            model.paste(images, backgrounds, tf.stop_gradient(recon["mask"])))
        d_loss = d_terms["D_real/paste"]
    pasted = images * recon["mask"] + backgrounds * (1.0 - recon["mask"])
    expected = float(losses.generator_loss(d_c(pasted)["real_fake"]))
    grads = _real_mask_term_gradients(model, tape, terms, "PASTE", expected, 1.5)
    assert not any(_reached(grads, ae.background_encoder.trainable_variables
                            + ae.background_generator.trainable_variables))
    d_grads = tape.gradient(d_loss, everything)
    assert {id(v) for v, g in zip(everything, d_grads) if g is not None} == _ids(
        d_c.adversarial_variables)
    expected_d = losses.discriminator_loss(d_c(images)["real_fake"], d_c(pasted)["real_fake"])
    assert float(d_loss) == pytest.approx(float(expected_d), rel=1e-5)
    assert _only_on_real_images(model, cfg, "PASTE", images)


def test_real_removal_trains_the_masks_against_the_real_path_d_bg_only_when_on(cfg):
    """--real_removal_weight: a real image with its predicted mask's region filled by its
    reconstructed background (detached) is judged by the real path's D_bg as a clean
    background; the term (times the weight, in the real path's total) reaches the mask head
    and E_p, not the background networks. Generated images get no such term, and the default
    (0) adds none."""
    images = tf.random.stateless_uniform((BATCH, 32, 32, 3), (22, 0), -1, 1)
    keras.utils.set_random_seed(11)
    model = loop.build_model(cfg.replace(real_removal_weight=0.5))
    ae = model.autoencoder
    d_bg, _ = model.discriminator_pairs()[REAL]
    with tf.GradientTape() as tape:
        recon = model._reconstruct(images, 20)
        terms = model.reconstruction_path(REAL, images, recon)
    removed = images * (1.0 - recon["mask"]) + recon["background"] * recon["mask"]
    expected = float(losses.generator_loss(d_bg(removed)["is_background"]))
    grads = _real_mask_term_gradients(model, tape, terms, "REMOVAL", expected, 0.5)
    assert not any(_reached(grads, ae.background_generator.trainable_variables))
    assert _only_on_real_images(model, cfg, "REMOVAL", images)


def test_real_paste_enters_the_real_path_d_update(cfg):
    """In a training step with all three paths, D_real's total carries the paste term."""
    keras.utils.set_random_seed(10)
    model = loop.build_model(cfg.replace(real_paste_weight=1.0))
    model.load_discriminator_clones()
    model.set_paths((GEN, FAKE, REAL))
    recorder = _LogRecorder()
    model.fit(_random_batches(cfg, seed=3), steps_per_epoch=1, epochs=1, verbose=0,
              callbacks=[recorder])
    log = recorder.batches[0]
    assert np.isfinite(log["D_real/paste"]) and np.isfinite(log["real/PASTE"])
    assert log["D_real/total"] == pytest.approx(
        cfg.bg_adv_weight * log["D_real/bgA"] + log["D_real/bgB"] + log["D_real/cA"]
        + log["D_real/paste"], rel=1e-5)
    assert "D_fake/paste" not in log and "D_generation/paste" not in log


def test_shifted_composite_moves_the_foreground_layer(cfg):
    model = loop.build_model(cfg.replace(fg_shift=0.2))  # up to round(6.4) = 6 pixels
    size = cfg.image_size
    mask = np.zeros((BATCH, size, size, 1), np.float32)
    mask[:, 12:20, 12:20] = 1.0
    mask = tf.Variable(mask)
    gen = {"background": tf.fill((BATCH, size, size, 3), -1.0),
           "foreground": tf.ones((BATCH, size, size, 3)), "mask": mask}
    with tf.GradientTape() as tape:
        moved = model.shifted_composite(gen, 30)
        loss = tf.reduce_sum(moved)
    inside = moved.numpy()[..., 0] > 0
    offsets = set()
    for b in range(BATCH):  # the 8x8 square, whole, moved by at most 6 pixels each way
        ys, xs = np.nonzero(inside[b])
        assert inside[b].sum() == 64 and ys.max() - ys.min() == 7 and xs.max() - xs.min() == 7
        assert abs(ys.min() - 12) <= 6 and abs(xs.min() - 12) <= 6
        offsets.add((ys.min() - 12, xs.min() - 12))
    assert len(offsets) > 1  # per-example offsets
    grad = tape.gradient(loss, mask).numpy()
    assert np.abs(grad).sum() > 0  # the adversarial loss still reaches the mask
    unshifted = loop.build_model(cfg.replace(fg_shift=0.01))  # rounds to 0 pixels
    np.testing.assert_allclose(unshifted.shifted_composite(gen, 30).numpy(),
                               (mask.numpy() * 2 - 1) * np.ones((1, 1, 1, 3)), atol=1e-6)


def test_low_contrast_composite_pulls_the_object_towards_the_background_under_it(cfg):
    """--fake_contrast_pull: inside the mask the object colour moves towards the mean
    background colour under the mask by a per-example fraction in [0, pull); outside the mask
    the image is the background; the result is detached."""
    pull = 0.8
    model = loop.build_model(cfg.replace(fake_contrast_pull=pull))
    _at_step(model, 3)
    size = cfg.image_size
    ramp = np.linspace(-1.0, 0.5, size, dtype=np.float32)[None, None, :, None]
    background = tf.constant(np.broadcast_to(ramp, (BATCH, size, size, 3)))
    mask = np.zeros((BATCH, size, size, 1), np.float32)
    mask[:, 8:16, 4:12] = 1.0
    foreground = tf.Variable(tf.ones((BATCH, size, size, 3)))
    gen = {"background": background, "foreground": foreground, "mask": tf.constant(mask)}
    with tf.GradientTape() as tape:
        out = model.low_contrast_composite(gen, 40)
        loss = tf.reduce_sum(out)
    out = out.numpy()
    around = ramp[0, 0, 4:12, 0].mean()  # the background under the square
    inside = out[:, 8:16, 4:12, :]
    fractions = (1.0 - inside[:, 0, 0, 0]) / (1.0 - around)  # 1 + (around - 1) * f
    np.testing.assert_allclose(inside, (1.0 + (around - 1.0) * fractions)[:, None, None, None]
                               * np.ones_like(inside), rtol=1e-5, atol=1e-5)
    assert fractions.min() >= 0.0 and fractions.max() < pull
    assert len(set(np.round(fractions, 4))) > 1  # drawn per example
    outside = np.ones((size, size), bool)
    outside[8:16, 4:12] = False
    np.testing.assert_allclose(out[:, outside], background.numpy()[:, outside], atol=1e-6)
    assert tape.gradient(loss, foreground) is None
    _at_step(model, 4)
    assert not np.allclose(model.low_contrast_composite(gen, 40).numpy(), out)  # per step


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_fake_scene_puts_the_generated_object_over_real_backgrounds_in_its_share(cfg, share):
    """--fake_real_background: each example of fake reconstruction reads the generated object
    (foreground, mask) over either its generated background or the batch's real one, in about
    that share, and the background target is the one it was composited over; detached."""
    model = loop.build_model(cfg.replace(fake_real_background=share))
    _at_step(model, 5)
    batch, size = 16, cfg.image_size
    generated = tf.constant(np.full((batch, size, size, 3), -0.5, np.float32))
    real = tf.constant(np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 3))
                       .astype(np.float32))
    mask = np.zeros((batch, size, size, 1), np.float32)
    mask[:, 8:16, 4:12] = 1.0
    foreground = tf.Variable(tf.fill((batch, size, size, 3), 0.75))
    gen = {"background": generated, "foreground": foreground, "mask": tf.constant(mask),
           "image": tf.constant(mask * 0.75 + (1 - mask) * generated.numpy())}
    with tf.GradientTape() as tape:
        image, background = model.fake_scene(gen, real)
        loss = tf.reduce_sum(image) + tf.reduce_sum(background)
    image, background = image.numpy(), background.numpy()
    is_real = np.array([np.array_equal(background[b], real.numpy()[b]) for b in range(batch)])
    is_generated = np.array([np.array_equal(background[b], generated.numpy()[b])
                             for b in range(batch)])
    assert np.all(is_real ^ is_generated)  # one or the other, whole
    assert is_real.mean() == share if share in (0.0, 1.0) else 0 < is_real.sum() < batch
    np.testing.assert_allclose(image, mask * 0.75 + (1 - mask) * background, atol=1e-6)
    assert tape.gradient(loss, foreground) is None


@pytest.mark.parametrize("pull, share, calls", [(0.0, 0.0, 0), (0.7, 0.0, 1), (0.0, 1.0, 0),
                                               (0.7, 1.0, 1)])
def test_fake_reconstruction_reads_the_low_contrast_image_only_when_on(cfg, pull, share, calls,
                                                                      monkeypatch):
    """The fake path's input is `low_contrast_composite` of the generated batch when the option
    is on and the generated image itself when off (the paper), with or without real
    backgrounds (`fake_real_background`); a real step trains with either."""
    keras.utils.set_random_seed(3)
    model = loop.build_model(cfg.replace(fake_contrast_pull=pull, fake_real_background=share))
    seen = []
    real = model.low_contrast_composite

    def recording(gen, site, background=None):
        seen.append(site)
        return real(gen, site, background)

    scenes, targets = [], []
    real_scene, real_path = model.fake_scene, model.reconstruction_path

    def scene(gen, real_backgrounds):
        scenes.append(real_scene(gen, real_backgrounds))
        return scenes[-1]

    def path(name, images, recon, path_targets=None):
        targets.append((name, images, path_targets))
        return real_path(name, images, recon, path_targets)

    monkeypatch.setattr(model, "low_contrast_composite", recording)
    monkeypatch.setattr(model, "fake_scene", scene)
    monkeypatch.setattr(model, "reconstruction_path", path)
    model.set_paths(("generation", "fake"))
    history = model.fit(data.training_dataset(cfg, start_step=1), steps_per_epoch=1, epochs=1,
                        verbose=0)
    assert len(seen) == calls
    assert np.isfinite(history.history["fake/total"][-1])
    # The fake path reads fake_scene's image and is told its background as the target.
    (image, background), = scenes
    (name, images, path_targets), = targets
    assert name == "fake" and images is image and path_targets["background"] is background


# --- paper size -----------------------------------------------------------------------------
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


def _traced_apply(optimizer, variables):
    """A tf.function gradients -> optimizer.apply_gradients on `variables`."""
    return tf.function(lambda grads: optimizer.apply_gradients(zip(grads, variables)))


def test_fused_adam_updates_like_keras_adam():
    """One ResourceApplyAdam per variable gives Keras Adam's weights and moments, step by step,
    and every OneGAN optimizer is one (inside the loss scale under mixed_float16). Under
    distribution strategies: the Mirrored and multi-worker training tests use it."""
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=(4,)).astype("float32")]
    grads = [[rng.normal(size=x.shape).astype("float32") for x in start] for _ in range(4)]
    results = []
    for optimizer_class in (keras.optimizers.Adam, FusedAdam):
        variables = [keras.Variable(x) for x in start]
        optimizer = optimizer_class(0.05, beta_1=0.5, beta_2=0.9, epsilon=1e-3)
        optimizer.build(variables)
        step = _traced_apply(optimizer, variables)
        trajectory = []
        for g in grads:
            step([tf.constant(x) for x in g])
            trajectory.append([np.array(v.numpy()) for v in variables + optimizer.variables])
        results.append(trajectory)
    keras_adam, fused = results
    assert not np.allclose(keras_adam[-1][0], start[0])  # the weights moved
    for ours, theirs in zip(fused, keras_adam, strict=True):
        for x, y in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    for precision in ("float32", "mixed_float16"):
        model = loop.build_model(config_lib.preset("tiny", mixed_precision=precision))
        for optimizer in model.trained_optimizers():
            assert isinstance(getattr(optimizer, "inner_optimizer", optimizer), FusedAdam)


def test_discriminator_learning_rate_is_separate(cfg):
    """--d_learning_rate sets the three D optimizers' rate, the generators keep theirs; 0 (the
    default) gives every optimizer --learning_rate, as the paper."""
    model = loop.build_model(cfg.replace(d_learning_rate=8e-4))
    rates = {path: float(opt.learning_rate) for path, opt in model.d_optimizers().items()}
    assert rates == pytest.approx({"generation": 8e-4, "fake": 8e-4, "real": 8e-4})
    assert float(model.g_optimizer.learning_rate) == pytest.approx(cfg.learning_rate)
    model = loop.build_model(cfg)
    assert all(float(opt.learning_rate) == pytest.approx(cfg.learning_rate)
               for opt in model.trained_optimizers())


# --- learning-rate decay (--lr_decay_steps) ---------------------------------------------------
def test_learning_rate_factor_known_values(cfg):
    decayed = cfg.replace(total_steps=100, lr_decay_steps=40)
    factors = [float(learning_rate_factor(decayed, s)) for s in (0, 60, 80, 99, 100, 120)]
    np.testing.assert_allclose(factors, [1.0, 1.0, 0.5, 0.025, 0.0, 0.0], rtol=1e-6)
    assert float(learning_rate_factor(cfg.replace(total_steps=100), 99)) == 1.0


def test_lr_decay_reaches_every_optimizer_through_the_global_step(cfg):
    """The rates follow the global step (not each optimizer's own count: the reconstruction
    D pairs start late); each train step sets them, whatever a checkpoint restored, and a step
    at factor 0 moves no trained weight."""
    decayed = cfg.replace(lr_decay_steps=cfg.total_steps, d_learning_rate=4 * cfg.learning_rate)
    keras.utils.set_random_seed(3)
    model = loop.build_model(decayed)
    _at_step(model, decayed.total_steps // 2)
    model.set_learning_rates()
    np.testing.assert_allclose(float(model.g_optimizer.learning_rate),
                               0.5 * decayed.learning_rate, rtol=1e-6)
    for optimizer in model.d_optimizers().values():
        assert int(optimizer.iterations) == 0
        np.testing.assert_allclose(float(optimizer.learning_rate),
                                   0.5 * decayed.d_learning_rate, rtol=1e-6)
    _at_step(model, decayed.total_steps)
    model.g_optimizer.learning_rate = 0.5  # as if restored from elsewhere: overwritten
    trained = model.generator_variables() + model.discriminator_variables(GEN)
    before = _snapshot(trained)
    model.fit(_random_batches(decayed), steps_per_epoch=1, epochs=1, verbose=0)
    assert int(model.g_optimizer.iterations) == 1
    assert not any(_changed(trained, before))
    assert float(model.g_optimizer.learning_rate) == 0.0
