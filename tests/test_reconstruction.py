"""Phase II of OneGAN: the reconstruction path (Sec. 4.2, Eq. 6-9, 15-18), its mixup, the
ablation flags that act on it, the discriminator clones and the multi-phase schedule (Sec. 4.3),
and the inference functions built on it.

Runtime matters (2 shared CPU cores): one tiny OneGAN is shared by the module. No test depends
on its weights being untrained; the few that train it say so. Loss-ablation tests swap
`model.config` (the flags are read at call time, in one place each; see model.py).
"""

import io
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from onegan_tf import config as config_lib
from onegan_tf import data
from onegan_tf.nets.autoencoder import AutoEncoder, straight_through_one_hot
from onegan_tf.nets.generators import compose
from onegan_tf.serving import inference
from onegan_tf.training import loop, losses, rundir
from onegan_tf.training.trainer import active_paths, phase_two_start

BATCH = 4
GEN, FAKE, REAL = "generation", "fake", "real"


# --- fixtures and helpers ------------------------------------------------------------------
@pytest.fixture(scope="module")
def cfg():
    return config_lib.preset("tiny", batch_size=BATCH)


@pytest.fixture(scope="module")
def model(cfg):
    keras.utils.set_random_seed(3)
    return loop.build_model(cfg)


@pytest.fixture(scope="module")
def images(cfg):
    """BATCH held-out shapes images in [-1, 1]."""
    return data.evaluation_batch(cfg, BATCH)["image"]


def _at_step(model, step):
    model.step.assign(step)  # model.step (the global step) seeds every draw


def _tap(monkeypatch, network, taps, name, key=None):
    """Wraps `network.call` so that its output (or output[key]) is recorded in taps[name]: the
    very tensor the reconstruction path consumes, so tape.gradient(..., taps[name]) is the
    derivative of the outputs with respect to that intermediate."""
    original = network.call

    def call(*args, **kwargs):
        out = original(*args, **kwargs)
        taps[name] = out if key is None else out[key]
        return out

    monkeypatch.setattr(network, "call", call)


def _tap_pre_images_and_bypasses(monkeypatch, ae):
    """A_fg (G_fg0), A_bg (G_bg0), B_fg (E_p's bypass head), B_bg (E_bg)."""
    taps = {}
    _tap(monkeypatch, ae.foreground_pre, taps, "A_fg")
    _tap(monkeypatch, ae.background_pre, taps, "A_bg")
    _tap(monkeypatch, ae.shape_encoder, taps, "B_fg", key="bypass")
    _tap(monkeypatch, ae.background_encoder, taps, "B_bg")
    return taps


def _output_objective(out, seed=0):
    """A generic scalar of every image-like output (random weights: no cancellations)."""
    total = 0.0
    for i, key in enumerate(("image", "foreground", "mask", "background")):
        w = tf.random.stateless_normal(tf.shape(out[key]), (seed, i))
        total += tf.reduce_sum(out[key] * w)
    return total


def _per_example_abs_sum(gradient):
    if gradient is None:
        return None
    return tf.reduce_sum(tf.abs(gradient), axis=tuple(range(1, gradient.shape.rank))).numpy()


def _fake_batch(model, cfg, seed=0):
    """A generation-path batch and the targets the fake reconstruction is scored against."""
    child = tf.random.stateless_uniform((BATCH,), (seed, 0), 0, cfg.num_children, tf.int32)
    z = tf.random.stateless_normal((BATCH, cfg.z_dim), (seed, 1))
    gen = model.autoencoder.generate(child, z, training=True)
    targets = {"v_p": gen["v_p"], "v_c": gen["v_c"], "background": gen["background"],
               "mask": gen["mask"]}
    return child, gen, targets


# --- mixup (Eq. 9): betas ---------------------------------------------------------------------
def test_sample_betas_bounds_per_example_and_per_step(model):
    _at_step(model, 5)
    betas = {k: v.numpy() for k, v in model.sample_betas(64, 13).items()}
    for key in ("beta1", "beta2"):  # U[0, 1] on (v_p, v_c)
        assert betas[key].shape == (64,)
        assert betas[key].min() >= 0.0 and betas[key].max() <= 1.0
        assert betas[key].min() < 0.25 and betas[key].max() > 0.75  # spans the range
    for key in ("beta3", "beta4"):  # U[0.5, 1] on (A_fg, B_fg), (A_bg, B_bg)
        assert betas[key].shape == (64,)
        assert betas[key].min() >= 0.5 and betas[key].max() <= 1.0
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


def test_mixup_end_points_select_pre_image_or_bypass_per_example(model, images, monkeypatch):
    """beta3 = beta4 = 0 -> outputs independent of B_fg, B_bg; 1 -> independent of A_fg, A_bg;
    per example (examples 0, 2 use beta 0; 1, 3 use beta 1)."""
    ae = model.autoencoder
    taps = _tap_pre_images_and_bypasses(monkeypatch, ae)
    pick = tf.constant([0.0, 1.0, 0.0, 1.0])
    betas = {"beta1": tf.fill((BATCH,), 0.5), "beta2": tf.fill((BATCH,), 0.5),
             "beta3": pick, "beta4": pick}
    with tf.GradientTape() as tape:
        out = ae.reconstruct(images, betas, training=True)
        objective = _output_objective(out)
    grads = dict(zip(taps, tape.gradient(objective, list(taps.values()))))
    g = {k: _per_example_abs_sum(v) for k, v in grads.items()}
    for pre, bypass in (("A_fg", "B_fg"), ("A_bg", "B_bg")):
        # beta = 0 (examples 0, 2): only the pre-image matters.
        assert np.all(g[bypass][[0, 2]] == 0), (bypass, g[bypass])
        assert np.all(g[pre][[0, 2]] > 0), (pre, g[pre])
        # beta = 1 (examples 1, 3): only the bypass matters.
        assert np.all(g[pre][[1, 3]] == 0), (pre, g[pre])
        assert np.all(g[bypass][[1, 3]] > 0), (bypass, g[bypass])

    # The same with sampled betas in (0.5, 1): both inputs matter for every example.
    _at_step(model, 7)
    with tf.GradientTape() as tape:
        out = ae.reconstruct(images, model.sample_betas(BATCH, 13), training=True)
        objective = _output_objective(out)
    grads = dict(zip(taps, tape.gradient(objective, list(taps.values()))))
    for name, grad in grads.items():
        assert np.all(_per_example_abs_sum(grad) > 0), name


def test_mixup_end_points_on_code_vectors(model, images, monkeypatch):
    """beta1/beta2 = 0 -> the embeddings' (v_p, v_c) only; 1 -> the encoders' (v_p-hat, v_c-hat)."""
    ae = model.autoencoder
    taps = {}
    _tap(monkeypatch, ae.shape_encoder, taps, "v_p_hat", key="parent_mean")
    _tap(monkeypatch, ae.style_encoder, taps, "v_c_hat", key="child_mean")
    _tap(monkeypatch, ae.parent_embedding, taps, "v_p")
    _tap(monkeypatch, ae.child_embedding, taps, "v_c")
    pick = tf.constant([0.0, 1.0, 0.0, 1.0])
    half = tf.fill((BATCH,), 0.75)
    betas = {"beta1": pick, "beta2": pick, "beta3": half, "beta4": half}
    with tf.GradientTape() as tape:
        objective = _output_objective(ae.reconstruct(images, betas, training=True))
    g = {k: _per_example_abs_sum(v)
         for k, v in zip(taps, tape.gradient(objective, list(taps.values())))}
    for embedded, encoded in (("v_p", "v_p_hat"), ("v_c", "v_c_hat")):
        assert np.all(g[encoded][[0, 2]] == 0) and np.all(g[embedded][[0, 2]] > 0), g
        assert np.all(g[embedded][[1, 3]] == 0) and np.all(g[encoded][[1, 3]] > 0), g


def test_bypass_perturbation_is_invisible_at_beta_zero(model, images):
    """Forward check of the same end point: replacing B_fg by noise changes nothing when
    beta3 = beta4 = 0, and changes the outputs when they are 1."""
    ae = model.autoencoder
    encoded = ae.encode(images)
    noisy = dict(encoded, bypass=encoded["bypass"]
                 + tf.random.stateless_normal(tf.shape(encoded["bypass"]), (1, 2)))

    def run(beta, enc):
        b = tf.fill((BATCH,), float(beta))
        return ae.reconstruct(images, {"beta1": b, "beta2": b, "beta3": b, "beta4": b},
                              encoded=enc)

    for key in ("image", "mask", "background"):
        np.testing.assert_array_equal(run(0, encoded)[key].numpy(), run(0, noisy)[key].numpy())
    assert not np.allclose(run(1, encoded)["mask"].numpy(), run(1, noisy)["mask"].numpy())


# --- ablation flags ---------------------------------------------------------------------------
def test_no_bypass_ablation_cuts_the_bypasses(model, cfg, images, monkeypatch):
    no_bypass = cfg.replace(use_bypass=False)
    monkeypatch.setattr(model, "config", no_bypass)
    _at_step(model, 3)
    betas = model.sample_betas(BATCH, 23)
    np.testing.assert_array_equal(betas["beta3"].numpy(), 0.0)
    np.testing.assert_array_equal(betas["beta4"].numpy(), 0.0)
    assert np.all(betas["beta1"].numpy() < 1)  # the vector mixup still runs
    # The training reconstruction (sampled noise and betas) ignores B_fg, B_bg entirely.
    taps = _tap_pre_images_and_bypasses(monkeypatch, model.autoencoder)
    with tf.GradientTape() as tape:
        recon = model._reconstruct(images, 20)
        terms = model.reconstruction_path(REAL, images, recon)
        objective = terms["real/total"] + _output_objective(recon)
    grads = dict(zip(taps, tape.gradient(objective, list(taps.values()))))
    for name in ("B_fg", "B_bg"):
        assert grads[name] is None or np.all(grads[name].numpy() == 0), name
    for name in ("A_fg", "A_bg"):
        assert np.all(_per_example_abs_sum(grads[name]) > 0), name
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
    _, gen, targets = _fake_batch(model, cfg)
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
    child, gen, _ = _fake_batch(model, cfg, seed=1)
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


def test_schedule_ablations_active_paths():
    tiny = config_lib.preset("tiny")  # Phase II (clones + fake) at 10, real at 20
    no_real = tiny.replace(real_recon=False)
    assert [active_paths(no_real, s) for s in (9, 10, 20, 10**6)] == [
        (GEN,), (GEN, FAKE), (GEN, FAKE), (GEN, FAKE)]
    assert phase_two_start(no_real) == 10
    only = tiny.replace(phase1_only=True)
    assert {active_paths(only, s) for s in range(0, 40)} == {(GEN,)}
    assert phase_two_start(only) is None
    assert loop.schedule_boundaries(only) == [10, 20, 30]  # harmless: paths never change
    flat = tiny.replace(multi_phase=False)
    assert {active_paths(flat, s) for s in range(0, 40)} == {(GEN, FAKE, REAL)}
    assert phase_two_start(flat) == 0
    assert {active_paths(flat.replace(real_recon=False), s) for s in range(40)} == {(GEN, FAKE)}


@pytest.mark.parametrize("norm", config_lib.NORMALIZATIONS)
def test_norm_variants_build_and_reconstruct(cfg, images, norm):
    keras.utils.set_random_seed(0)
    ae = AutoEncoder(cfg.replace(norm=norm))
    ae.build_all()
    ones = tf.ones((BATCH,))
    betas = {"beta1": 0.5 * ones, "beta2": 0.5 * ones, "beta3": 0.75 * ones, "beta4": 0.75 * ones}
    with tf.GradientTape() as tape:
        out = ae.reconstruct(images, betas, training=True)
        objective = _output_objective(out)
    for key in ("image", "foreground", "background"):
        assert out[key].shape == (BATCH, 32, 32, 3)
        assert np.all(np.abs(out[key].numpy()) <= 1.0)
    assert out["mask"].shape == (BATCH, 32, 32, 1)
    assert np.all((out["mask"].numpy() >= 0) & (out["mask"].numpy() <= 1))
    grads = tape.gradient(objective, ae.trainable_variables)
    assert all(np.all(np.isfinite(g.numpy())) for g in grads if g is not None)
    assert sum(g is not None for g in grads) > 0.9 * len(grads)
    # Inference mode too (batchnorm's moving statistics).
    assert np.all(np.isfinite(inference.reconstruct(ae, images)["image"].numpy()))


# --- discriminator clones -------------------------------------------------------------------
def _pair_weights(model, path):
    return [w.numpy().copy() for net in model.discriminator_pairs()[path] for w in net.weights]


def _distance(a, b):
    return sum(float(np.abs(x - y).sum()) for x, y in zip(a, b, strict=True))


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_clones_equal_originals_after_loading_then_diverge(cfg, model):
    """Trains the shared model for 3 Phase II steps (eagerly: tracing costs more than 3 steps)."""
    assert not _same(_pair_weights(model, GEN), _pair_weights(model, FAKE))  # random init
    model.load_discriminator_clones()
    assert int(model.clones_loaded.numpy()) == 1
    loaded = {p: _pair_weights(model, p) for p in (GEN, FAKE, REAL)}
    assert _same(loaded[GEN], loaded[FAKE]) and _same(loaded[GEN], loaded[REAL])
    model.set_paths((GEN, FAKE, REAL))
    model.run_eagerly = True
    try:
        model.fit(data.training_dataset(cfg), steps_per_epoch=3, epochs=1, verbose=0)
    finally:
        model.run_eagerly = False
        model.train_function = None
    after = {p: _pair_weights(model, p) for p in (GEN, FAKE, REAL)}
    for p in (GEN, FAKE, REAL):
        assert not _same(after[p], loaded[p]), f"{p} pair did not train"
    for p, q in ((GEN, FAKE), (GEN, REAL), (FAKE, REAL)):
        assert not _same(after[p], after[q]), f"{p} and {q} pairs still equal"
    for opt in model.d_optimizers().values():
        assert int(opt.iterations.numpy()) == 3


# --- schedule and resume across the Phase II boundary ---------------------------------------
def test_schedule_boundaries_and_active_paths_at_boundaries():
    gen, fake, real = (GEN,), (GEN, FAKE), (GEN, FAKE, REAL)
    tiny = config_lib.preset("tiny")
    assert loop.schedule_boundaries(tiny) == [10, 20, 30]
    assert [active_paths(tiny, s) for s in (0, 9, 10, 19, 20, 29)] == [
        gen, gen, fake, fake, real, real]
    split = tiny.replace(phase1_steps=6, fake_recon_start=8, real_recon_start=8)
    assert loop.schedule_boundaries(split) == [6, 8, 30]
    assert [active_paths(split, s) for s in (5, 6, 7, 8)] == [gen, gen, gen, real]
    # Whatever the configuration, paths change (and clones load) only at a boundary, so that
    # train() can run one fit() per segment with fixed paths.
    configs = [tiny, split, tiny.replace(real_recon=False), tiny.replace(multi_phase=False),
               tiny.replace(phase1_only=True), tiny.replace(total_steps=15),
               tiny.replace(phase1_steps=0, fake_recon_start=0, real_recon_start=0),
               tiny.replace(phase1_steps=3, fake_recon_start=11, real_recon_start=29)]
    for c in configs:
        bounds = loop.schedule_boundaries(c)
        assert bounds == sorted(set(bounds)) and bounds[-1] == c.total_steps
        for s in range(1, c.total_steps):
            if active_paths(c, s) != active_paths(c, s - 1) or s == phase_two_start(c):
                assert s in bounds, (c, s)


def _training_records(run_dir):
    """stats.jsonl lines written by the training log (other lines, e.g. evaluations, have no
    'paths')."""
    return [r for r in rundir.read_stats(run_dir) if "paths" in r]


def _train(config, monkeypatch):
    """loop.train, its model run eagerly (tracing the three-path step costs more than the
    few steps these tests run); returns (model, printed text)."""
    build = loop.build_model

    def eager_build(*args, **kwargs):
        built = build(*args, **kwargs)
        built.run_eagerly = True
        return built

    monkeypatch.setattr(loop, "build_model", eager_build)
    stream = io.StringIO()
    trained = loop.train(config, stream=stream)
    return trained, stream.getvalue()


def test_resume_across_the_phase_two_boundary(tmp_path, monkeypatch):
    base = config_lib.preset(
        "tiny", batch_size=2, phase1_steps=2, fake_recon_start=2, real_recon_start=3,
        log_every=1, sample_every=1000, checkpoint_every=1000, keep_checkpoints=5,
        run_dir=str(tmp_path / "run"))
    # Run 1 stops inside Phase I.
    first, text = _train(base.replace(total_steps=1), monkeypatch)
    assert int(first.step.numpy()) == 1 and int(first.clones_loaded.numpy()) == 0
    assert "Phase II starts" not in text
    # Run 2 resumes and crosses both boundaries (clones + fake at 2, real at 3).
    second, text = _train(base.replace(total_steps=4), monkeypatch)
    assert "resumed" in text and "at step 1" in text
    assert text.count("Phase II starts") == 1 and "step 2: Phase II starts" in text
    assert int(second.step.numpy()) == 4
    assert int(second.clones_loaded.numpy()) == 1
    assert [int(o.iterations.numpy()) for o in second.d_optimizers().values()] == [4, 2, 1]
    assert not _same(_pair_weights(second, GEN), _pair_weights(second, FAKE))
    stats = _training_records(base.run_dir)
    assert [r["step"] for r in stats] == [1, 2, 3, 4]
    # Record k logs the step k-1 -> k, trained with active_paths(k - 1).
    assert [r["paths"] for r in stats] == [
        "generation", "generation", "generation+fake", "generation+fake+real"]
    assert "fake/REC" not in stats[1] and "fake/REC" in stats[2] and "real/REC" in stats[3]
    assert [s for s, _ in rundir.list_checkpoints(base.run_dir)] == [1, 2, 3, 4]
    fake_at_4, generation_at_4 = _pair_weights(second, FAKE), _pair_weights(second, GEN)
    # Run 3 resumes inside Phase II: clones_loaded comes back from the checkpoint, so the
    # trained clones are not overwritten by D_bg/D_c again.
    third, text = _train(base.replace(total_steps=5), monkeypatch)
    assert "Phase II starts" not in text
    assert int(third.step.numpy()) == 5 and int(third.clones_loaded.numpy()) == 1
    stats = _training_records(base.run_dir)
    assert [r["step"] for r in stats] == [1, 2, 3, 4, 5]
    assert stats[-1]["paths"] == "generation+fake+real"
    # The fake clone of step 4 was restored and trained one more step: it is nearer its step-4
    # self than the step-4 D_bg/D_c it would have been reset to (one step apart, were it reset;
    # measured: 0.86 vs 4.1).
    fake_at_5 = _pair_weights(third, FAKE)
    assert _distance(fake_at_5, fake_at_4) < 0.5 * _distance(fake_at_5, generation_at_4)


# --- Eq. 15-17 terms -------------------------------------------------------------------------
def test_fake_and_real_reconstruction_terms(model, cfg):
    _, gen, targets = _fake_batch(model, cfg, seed=2)
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


# --- overfitting the real reconstruction --------------------------------------------------------
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


# --- inference ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ema(model):
    return model.ema


def test_inference_segment_cluster_reconstruct_remove(ema, images, cfg):
    mask = inference.segment(ema, images).numpy()
    assert mask.shape == (BATCH, 32, 32, 1)
    assert mask.min() >= 0 and mask.max() <= 1
    clusters = {k: v.numpy() for k, v in inference.cluster(ema, images).items()}
    assert clusters["parent_probs"].shape == (BATCH, cfg.num_parents)
    assert clusters["child_probs"].shape == (BATCH, cfg.num_children)
    for level, n in (("parent", cfg.num_parents), ("child", cfg.num_children)):
        probs = clusters[f"{level}_probs"]
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
        assert np.all(probs >= 0)
        assert clusters[level].dtype == np.int32
        assert np.all((clusters[level] >= 0) & (clusters[level] < n))
    np.testing.assert_array_equal(clusters["child"], clusters["child_probs"].argmax(-1))
    # The parent is the child's parent in the code tree; parent_probs sums its children.
    tree_parent = clusters["child"] * cfg.num_parents // cfg.num_children
    np.testing.assert_array_equal(clusters["parent"], tree_parent)
    members = np.arange(cfg.num_children) * cfg.num_parents // cfg.num_children
    for p in range(cfg.num_parents):
        np.testing.assert_allclose(clusters["parent_probs"][:, p],
                                   clusters["child_probs"][:, members == p].sum(-1), rtol=1e-5)
    np.testing.assert_allclose(clusters["shape_parent_probs"].sum(-1), 1.0, rtol=1e-5)
    recon = {k: v.numpy() for k, v in inference.reconstruct(ema, images).items()}
    for key in ("image", "foreground", "background"):
        assert recon[key].shape == (BATCH, 32, 32, 3)
        assert recon[key].min() >= -1 and recon[key].max() <= 1
    np.testing.assert_array_equal(recon["mask"], mask)
    # analyse() = reconstruct() + cluster() with one encoder pass.
    both = {k: v.numpy() for k, v in inference.analyse(ema, images).items()}
    assert set(both) == set(recon) | set(clusters)
    for key, value in {**recon, **clusters}.items():
        np.testing.assert_allclose(both[key], value, atol=1e-6, err_msg=key)
    removed = inference.remove_object(ema, images).numpy()
    np.testing.assert_array_equal(removed, recon["background"])
    # Inference is deterministic (means, fixed betas) and accepts numpy input.
    again = inference.reconstruct(ema, images.numpy())["image"].numpy()
    np.testing.assert_array_equal(again, recon["image"])


def test_inference_translate(ema, images, cfg):
    first = inference.translate(ema, images, 0).numpy()
    last = inference.translate(ema, images, cfg.num_children - 1).numpy()
    assert first.shape == last.shape == (BATCH, 32, 32, 3)
    assert np.abs(first).max() <= 1 and np.abs(last).max() <= 1
    assert np.abs(first - last).mean() > 1e-4  # the child code changes the style
    np.testing.assert_array_equal(inference.translate(ema, images, 0).numpy(), first)
    per_example = inference.translate(ema, images, [0, cfg.num_children - 1, 0, 0]).numpy()
    np.testing.assert_allclose(per_example[[0, 2, 3]], first[[0, 2, 3]], atol=1e-6)
    np.testing.assert_allclose(per_example[1], last[1], atol=1e-6)


def test_inference_generate(ema, cfg):
    child = np.arange(6, dtype=np.int32) % cfg.num_children
    z = np.random.default_rng(0).standard_normal((6, cfg.z_dim)).astype(np.float32)
    a = {k: v.numpy() for k, v in inference.generate(ema, child, z).items()}
    b = {k: v.numpy() for k, v in inference.generate(ema, child, z).items()}
    for key in ("image", "foreground", "mask", "background"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["image"].shape == (6, 32, 32, 3) and a["mask"].shape == (6, 32, 32, 1)
    assert np.abs(a["image"]).max() <= 1 and 0 <= a["mask"].min() and a["mask"].max() <= 1
    other_z = inference.generate(ema, child, z[::-1].copy())["image"].numpy()
    assert not np.allclose(other_z, a["image"])
    seeded = inference.generate(ema, child, seed=4)["image"].numpy()
    np.testing.assert_array_equal(seeded, inference.generate(ema, child, seed=4)["image"].numpy())
    assert not np.allclose(seeded, inference.generate(ema, child, seed=5)["image"].numpy())


def test_inference_mix(ema, images, cfg):
    backgrounds, objects = images, images[::-1]
    mixed = inference.mix(ema, backgrounds, foreground_images=objects).numpy()
    assert mixed.shape == (BATCH, 32, 32, 3) and np.abs(mixed).max() <= 1
    source = inference.reconstruct(ema, objects)
    expected = compose(inference.remove_object(ema, backgrounds), source["foreground"],
                       source["mask"]).numpy()
    np.testing.assert_allclose(mixed, expected, atol=1e-6)
    z = np.zeros((BATCH, cfg.z_dim), np.float32)
    generated = inference.mix(ema, backgrounds, child_id=2, z=z).numpy()
    assert generated.shape == (BATCH, 32, 32, 3) and np.abs(generated).max() <= 1
    obj = inference.generate(ema, np.full(BATCH, 2), z)
    expected = compose(inference.remove_object(ema, backgrounds), obj["foreground"],
                       obj["mask"]).numpy()
    np.testing.assert_allclose(generated, expected, atol=1e-6)
    with pytest.raises(ValueError, match="exactly one"):
        inference.mix(ema, backgrounds, foreground_images=objects, child_id=2)
    with pytest.raises(ValueError, match="exactly one"):
        inference.mix(ema, backgrounds)


# --- straight-through one-hot ------------------------------------------------------------------
def test_straight_through_one_hot():
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


def test_straight_through_selects_the_predicted_embedding(model, images):
    """In reconstruction, v_p / v_c are the embeddings of the encoders' argmax classes."""
    ae = model.autoencoder
    out = ae.reconstruct(images)
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
