"""The OneGAN training model: paths, losses and optimizers (Sec. 4, Eq. 10-18).

One `keras.Model` orchestrates the networks. Each path is a method returning its loss terms:
  * `generation_path`      - Eq. 10-14, every phase;
  * `reconstruction_path`  - Eq. 15-17 on fake images (Phase II) or real images (later).
Each path fights its own pair of discriminators from Phase II on (clones of D_bg, D_c made at
construction and loaded with the generation-path weights when Phase II starts).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from onegan_tf import compat
from onegan_tf.config import Config
from onegan_tf.nets.autoencoder import (
    AutoEncoder,
    ablate_betas,
    copy_weights,
    ema_update,
    tree_parent_probabilities,
)
from onegan_tf.nets.discriminators import (
    BackgroundDiscriminator,
    MaskDiscriminator,
    MaskParentClassifier,
    ObjectDiscriminator,
)
from onegan_tf.nets.generators import compose
from onegan_tf.training import distribute, losses, rundir

PATHS = ("generation", "fake", "real")


def active_paths(config: Config, step: int) -> tuple[str, ...]:
    """Which paths run at `step` (Sec. 4.3). The one place that reads the schedule ablations."""
    if config.phase1_only:
        return ("generation",)
    fake = not config.multi_phase or step >= config.fake_recon_start
    real = config.real_recon and (not config.multi_phase or step >= config.real_recon_start)
    return ("generation",) + (("fake",) if fake else ()) + (("real",) if real else ())


def phase_two_start(config: Config) -> int | None:
    """Step at which the discriminator clones are loaded (None: never)."""
    if config.phase1_only:
        return None
    return 0 if not config.multi_phase else config.phase1_steps


def _present(grads, variables):
    """(grad, var) pairs that have a gradient: the Gaussian heads of the encoders get none in
    Phase I (only the reconstruction path samples from them)."""
    return [(g, v) for g, v in zip(grads, variables) if g is not None]


def _resource(variable):
    """The tf.Variable behind a Keras variable (a tf.Variable stays itself)."""
    return variable.value if isinstance(variable, keras.Variable) else variable


class FusedAdam(keras.optimizers.Adam):
    """keras.optimizers.Adam whose update of a variable is one TensorFlow kernel
    (ResourceApplyAdam) instead of about 35 graph ops: the same formula (m and v moved towards
    the gradient, the step lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon))
    and the same slot variables, so checkpoints do not change. The train step's graph has a
    quarter fewer ops and traces that much faster (docs/speed.md)."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = ops.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=_resource(variable).handle, m=_resource(self._momentums[index]).handle,
            v=_resource(self._velocities[index]).handle,
            beta1_power=ops.power(beta_1, step), beta2_power=ops.power(beta_2, step),
            lr=ops.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=ops.cast(self.epsilon, dtype), grad=ops.cast(gradient, dtype))


def _make_optimizer(config: Config, name: str, learning_rate: float):
    """Adam as the paper; under mixed_float16 every optimizer gets its own dynamic loss scale
    (Keras wraps only the optimizer passed to compile())."""
    adam = FusedAdam(learning_rate, beta_1=config.beta_1, beta_2=config.beta_2, name=name)
    if config.mixed_precision == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(adam, name=f"{name}_loss_scale")
    return adam


def learning_rate_factor(config: Config, step):
    """The fraction of the learning rates that the update of global step `step` (0-based)
    takes: 1, then linear from 1 towards 0 over the last lr_decay_steps steps (the last update
    takes 1 / lr_decay_steps of the rates)."""
    if not config.lr_decay_steps:
        return ops.ones((), "float32")
    left = ops.cast(config.total_steps, "float32") - ops.cast(step, "float32")
    return ops.clip(left / float(config.lr_decay_steps), 0.0, 1.0)


def mode_seeking_term(images, z):
    """Mode-seeking term (Mao et al. 2019) for a batch whose second half (batch // 2 examples)
    repeats the codes of the first: 1 / (mean|I_a - I_b| / mean|z_a - z_b| + 1e-5). Large when
    z is ignored; its gradient pushes images of one code with different z apart."""
    batch = ops.shape(images)[0]
    half, offset = batch // 2, batch - batch // 2
    image_gap = ops.mean(ops.abs(images[:half] - images[offset:offset + half]))
    z_gap = ops.mean(ops.abs(ops.cast(z[:half] - z[offset:offset + half], "float32")))
    return 1.0 / (image_gap / z_gap + 1e-5)


class OneGAN(compat.BuildWithoutBatch, keras.Model):
    """Trains an `AutoEncoder` (+ its EMA copy) against D_bg/D_c and their two clone pairs."""

    def __init__(self, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        cfg = config
        self.autoencoder = AutoEncoder(cfg, name="autoencoder")
        self.ema = AutoEncoder(cfg, name="ema")
        # One (D_bg, D_c) pair per path; direct attributes so that checkpoints track them.
        for path in PATHS:
            suffix = "" if path == "generation" else f"_{path}"
            setattr(self, f"background_discriminator{suffix}",
                    BackgroundDiscriminator(cfg.df_dim, name=f"D_bg{suffix}"))
            setattr(self, f"object_discriminator{suffix}",
                    ObjectDiscriminator(cfg.df_dim, cfg.image_size, cfg.num_children,
                                        norm=cfg.d_norm, minibatch_stddev=cfg.minibatch_stddev,
                                        name=f"D_c{suffix}"))
        # Only when used, so that checkpoints of runs without it keep their variable list.
        self.mask_parent_head = (
            MaskParentClassifier(cfg.df_dim, cfg.image_size, cfg.num_parents, name="Q_p")
            if cfg.mask_parent_info_weight > 0 else None)
        self.mask_discriminator = (
            MaskDiscriminator(cfg.df_dim, cfg.image_size, name="D_m")
            if cfg.mask_adversarial_weight > 0 else None)
        # The global step: one per train_step, also when a loss-scaled update is skipped.
        self.global_step = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="global_step", dtype="int64",
            aggregation="only_first_replica")
        self.clones_loaded = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="clones_loaded", dtype="int32")
        self.paths = ("generation",)
        self._build_networks()

    def discriminator_pairs(self) -> dict[str, tuple[BackgroundDiscriminator, ObjectDiscriminator]]:
        """path -> (D_bg, D_c) of that path."""
        pairs = {}
        for path in PATHS:
            suffix = "" if path == "generation" else f"_{path}"
            pairs[path] = (getattr(self, f"background_discriminator{suffix}"),
                           getattr(self, f"object_discriminator{suffix}"))
        return pairs

    # --- construction ------------------------------------------------------------------
    def _build_networks(self):
        cfg = self.config
        self.autoencoder.build_all()
        self.ema.build_all()
        copy_weights(self.autoencoder, self.ema)
        self.ema.trainable = False  # updated only by ema_update
        images = ops.zeros((1, cfg.image_size, cfg.image_size, 3))
        for d_bg, d_c in self.discriminator_pairs().values():
            d_bg(images)
            d_c(images)
        for head in (self.mask_parent_head, self.mask_discriminator):
            if head is not None:
                head(images[..., :1])
        self.built = True

    def call(self, images, training=None):
        return self.autoencoder.reconstruct(images, training=training)

    def networks(self) -> dict[str, keras.Model]:
        """Every trained network by its paper name (for parameter counts)."""
        nets = dict(self.autoencoder.networks())
        for d_bg, d_c in self.discriminator_pairs().values():
            nets[d_bg.name], nets[d_c.name] = d_bg, d_c
        for head in (self.mask_parent_head, self.mask_discriminator):
            if head is not None:
                nets[head.name] = head
        return nets

    def generator_variables(self):
        """What the G/E optimizer trains: embeddings, generators, encoders, D_c's info head."""
        head = self.mask_parent_head
        return (self.autoencoder.trainable_variables
                + self.discriminator_pairs()["generation"][1].info_variables
                + (head.trainable_variables if head is not None else []))

    def discriminator_variables(self, path: str):
        d_bg, d_c = self.discriminator_pairs()[path]
        extra = (self.mask_discriminator.trainable_variables
                 if path == "generation" and self.mask_discriminator is not None else [])
        return d_bg.trainable_variables + d_c.adversarial_variables + extra

    def compile(self, **kwargs):
        super().compile(**kwargs)
        cfg = self.config
        d_rate = cfg.d_learning_rate or cfg.learning_rate
        self.g_optimizer = _make_optimizer(cfg, "g_optimizer", cfg.learning_rate)
        self.d_optimizer = _make_optimizer(cfg, "d_optimizer", d_rate)
        self.d_optimizer_fake = _make_optimizer(cfg, "d_optimizer_fake", d_rate)
        self.d_optimizer_real = _make_optimizer(cfg, "d_optimizer_real", d_rate)
        # Built explicitly on their variables (inside the strategy scope when there is one).
        self.g_optimizer.build(self.generator_variables())
        for path, opt in self.d_optimizers().items():
            opt.build(self.discriminator_variables(path))

    def trained_optimizers(self) -> list:
        """The optimizers that train: G/E's and each path's discriminator pair's."""
        return [self.g_optimizer, *self.d_optimizers().values()]

    def set_learning_rates(self):
        """Every optimizer's rate from the config and the global step (learning_rate_factor).
        Called when a run starts or resumes (the flags decide the rates, not a checkpoint) and,
        with --lr_decay_steps, at every step; the reconstruction paths' optimizers start late,
        so their own iteration counts would not tell where the schedule stands."""
        cfg = self.config
        factor = learning_rate_factor(cfg, self.global_step)
        d_rate = cfg.d_learning_rate or cfg.learning_rate
        self.g_optimizer.learning_rate.assign(cfg.learning_rate * factor)
        for optimizer in self.d_optimizers().values():
            optimizer.learning_rate.assign(d_rate * factor)

    def d_optimizers(self):
        return {"generation": self.d_optimizer, "fake": self.d_optimizer_fake,
                "real": self.d_optimizer_real}

    @property
    def step(self):
        """The global step (a variable, checkpointed with the model)."""
        return self.global_step

    def set_paths(self, paths: tuple[str, ...]):
        """Chooses the paths of the next train steps (retraces the train function)."""
        if tuple(paths) != self.paths:
            self.paths = tuple(paths)
            self.train_function = None

    def weights_are_finite(self) -> bool:
        return rundir.all_finite(self.weights)

    def load_discriminator_clones(self):
        """Phase II start: each reconstruction path's D pair <- the generation-path D pair."""
        d_bg, d_c = self.discriminator_pairs()["generation"]
        for path in ("fake", "real"):
            clone_bg, clone_c = self.discriminator_pairs()[path]
            copy_weights(d_bg, clone_bg)
            copy_weights(d_c, clone_c)
        self.clones_loaded.assign(1)

    # --- randomness: stateless, from (seed, step), so a resumed run draws what it should -----
    def _seed(self, site: int):
        return ops.stack([self.config.seed * 1000 + site, ops.cast(self.step, "int32")])

    def _draw(self, sampler, shape, site, **kwargs):
        """Draws the GLOBAL batch's values and keeps this replica's slice: the same numbers
        reach the same examples whatever the number of replicas."""
        replica = tf.distribute.get_replica_context()
        if replica is None or replica.num_replicas_in_sync == 1:
            return sampler(shape, self._seed(site), **kwargs)
        count, index = replica.num_replicas_in_sync, replica.replica_id_in_sync_group
        local = shape[0]
        values = sampler((local * count,) + tuple(shape[1:]), self._seed(site), **kwargs)
        return values[index * local:(index + 1) * local]

    def _uniform(self, shape, site, low=0.0, high=1.0):
        return self._draw(tf.random.stateless_uniform, shape, site, minval=low, maxval=high)

    def _normal(self, shape, site):
        return self._draw(tf.random.stateless_normal, shape, site)

    def sample_betas(self, batch: int, site: int):
        """Eq. 9's betas, per example: beta1, beta2 ~ U[0, 1]; beta3, beta4 ~ U[0.5, 1]."""
        betas = {"beta1": self._uniform((batch,), site),
                 "beta2": self._uniform((batch,), site + 1),
                 "beta3": self._uniform((batch,), site + 2, 0.5, 1.0),
                 "beta4": self._uniform((batch,), site + 3, 0.5, 1.0)}
        return ablate_betas(self.config, betas)

    # --- losses of each path ------------------------------------------------------------
    def discriminator_losses(self, path, real_images, real_backgrounds, fake_images,
                             fake_backgrounds, pasted=None):
        """Eq. 10 for one path's D pair; fakes arrive without gradient. `pasted`: images from
        `paste` (the `real_paste_weight` option), which D_c also learns to call fake."""
        d_bg, d_c = self.discriminator_pairs()[path]
        real_bg_out, real_obj_bg_out = d_bg(real_backgrounds), d_bg(real_images)
        bg_a = losses.discriminator_loss(real_bg_out["real_fake"],
                                         d_bg(fake_backgrounds)["real_fake"])
        bg_b = losses.discriminator_loss(real_bg_out["is_background"],
                                         real_obj_bg_out["is_background"])
        real_c = d_c(real_images)["real_fake"]
        c_a = losses.discriminator_loss(real_c, d_c(fake_images)["real_fake"])
        terms = {f"D_{path}/bgA": bg_a, f"D_{path}/bgB": bg_b, f"D_{path}/cA": c_a}
        total = self.config.bg_adv_weight * bg_a + bg_b + c_a
        if pasted is not None:
            terms[f"D_{path}/paste"] = losses.discriminator_loss(real_c,
                                                                 d_c(pasted)["real_fake"])
            total += terms[f"D_{path}/paste"]
        terms[f"D_{path}/total"] = total
        return terms

    def mask_discriminator_loss(self, real_images, generated_masks):
        """D_m's loss (the `mask_adversarial_weight` option): the masks the EMA model predicts
        for the real images (inference betas, no gradient) are real, the generated ones fake."""
        batch = ops.shape(real_images)[0]
        betas = ablate_betas(self.config, {k: ops.ones((batch,)) for k in
                                           ("beta1", "beta2", "beta3", "beta4")})
        real_masks = ops.stop_gradient(self.ema.reconstruct(real_images, betas)["mask"])
        return losses.discriminator_loss(self.mask_discriminator(real_masks),
                                         self.mask_discriminator(ops.stop_gradient(
                                             generated_masks)))

    def paste(self, images, backgrounds, masks):
        """Each image's object, cut out by its mask, over a clean real background of the
        batch (the `real_paste_weight` option)."""
        return compose(ops.cast(backgrounds, images.dtype), images, ops.cast(masks, images.dtype))

    def adversarial_losses(self, path, images, backgrounds):
        """Eq. 11 for the generator side against one path's D pair (+ D_c outputs for reuse)."""
        d_bg, d_c = self.discriminator_pairs()[path]
        bg_out, c_out = d_bg(backgrounds), d_c(images)
        terms = {"bgA": losses.generator_loss(bg_out["real_fake"]),
                 "bgB": losses.generator_loss(bg_out["is_background"]),
                 "cA": losses.generator_loss(c_out["real_fake"])}
        terms["G"] = self.config.bg_adv_weight * terms["bgA"] + terms["bgB"] + terms["cA"]
        return terms, bg_out, c_out

    def shifted_composite(self, gen, site: int):
        """The generated image with its foreground layer (I_fg, I_m) moved by a random whole-
        pixel offset per example, up to `fg_shift` of the image side (the `fg_shift` option).
        D_c judges this image: a mask that also covers background, or a foreground that paints
        it, looks wrong once moved over another part of the background."""
        size = self.config.image_size
        limit = int(round(self.config.fg_shift * size))
        batch = ops.shape(gen["mask"])[0]
        dy, dx = (self._draw(tf.random.stateless_uniform, (batch,), site + i, minval=-limit,
                             maxval=limit + 1, dtype="int32") for i in range(2))
        rows = ops.arange(size, dtype="int32")[None, :]
        # shift[b, i, k] = 1 where k = i - d[b]; rows that would come from outside stay 0.
        shift_y = ops.one_hot(rows - dy[:, None], size)
        shift_x = ops.one_hot(rows - dx[:, None], size)

        def move(x):
            return tf.einsum("bik,bklc,bjl->bijc", shift_y, x, shift_x)

        return compose(gen["background"], move(gen["foreground"]), move(gen["mask"]))

    def low_contrast_composite(self, gen, site: int, background=None):
        """The generated image, detached, with each example's object colour pulled towards
        the mean colour of the background under it by a fraction drawn from
        U[0, fake_contrast_pull) (the `fake_contrast_pull` option): the input of fake
        reconstruction, whose targets (mask, background, codes) it keeps, so the encoders also
        learn to segment objects that hardly stand out from their surroundings.
        `background`: the layer the object is composited over (default: the generated one)."""
        sg = ops.stop_gradient
        foreground, mask = sg(gen["foreground"]), sg(gen["mask"])
        background = sg(gen["background"]) if background is None else background
        batch = ops.shape(mask)[0]
        pull = self._uniform((batch, 1, 1, 1), site, 0.0, self.config.fake_contrast_pull)
        around = ops.sum(background * mask, axis=(1, 2), keepdims=True) / (
            ops.sum(mask, axis=(1, 2), keepdims=True) + 1e-6)
        return compose(background, foreground + (around - foreground) * pull, mask)

    def fake_scene(self, gen, real_backgrounds):
        """(image, background) of fake reconstruction: the image it reads and its background
        target, both detached. The generated image and background as they are (the paper),
        unless `fake_real_background` puts the generated object over the batch's clean real
        background in that share of the examples, and/or `fake_contrast_pull` pulls the
        object's colour towards the background under it (`low_contrast_composite`)."""
        cfg, sg = self.config, ops.stop_gradient
        background = sg(gen["background"])
        if cfg.fake_real_background > 0:
            batch = ops.shape(background)[0]
            swap = self._uniform((batch, 1, 1, 1), 41) < cfg.fake_real_background
            background = ops.where(swap, ops.cast(real_backgrounds, background.dtype),
                                   background)
        if cfg.fake_contrast_pull > 0:
            return self.low_contrast_composite(gen, 40, background), background
        if cfg.fake_real_background > 0:
            return compose(background, sg(gen["foreground"]), sg(gen["mask"])), background
        return sg(gen["image"]), background

    def generation_path(self, gen, child, z=None, judged=None):
        """Eq. 11-14 on a generated batch `gen` (from AutoEncoder.generate) of codes `child`.
        `judged`: the image D_c sees (default gen["image"]; see `shifted_composite`).

        Eq. 12 (classification) trains the encoders and, through the image they read, the
        generators. Eq. 13 (distances) trains only the encoders: they read a detached copy of
        the image (a second encoder pass), so the generators are not pulled towards images whose
        codes are easy to read back (unless `eq13_to_generator`)."""
        cfg, ae, sg = self.config, self.autoencoder, ops.stop_gradient
        terms, _, c_out = self.adversarial_losses(
            "generation", gen["image"] if judged is None else judged, gen["background"])
        parent = ops.cast(child * cfg.num_parents // cfg.num_children, "int32")
        enc = ae.encode(gen["image"], training=True)
        if cfg.eq13_to_generator:
            enc_d, image_d, mask_d = enc, gen["image"], gen["mask"]
        else:
            image_d, mask_d = sg(gen["image"]), sg(gen["mask"])
            enc_d = ae.encode(image_d, training=True)
        bypass_bg = ae.background_encoder([image_d, mask_d], training=True)
        terms.update({
            "CE_parent": losses.cross_entropy(enc["parent_logits"], parent),  # Eq. 12
            "CE_child": losses.cross_entropy(enc["child_logits"], child),
            "CE_info": losses.cross_entropy(c_out["child_logits"], child),
            "MSE_v_c": losses.mean_squared_error(sg(gen["v_c"]), enc_d["child_mean"]),  # Eq. 13
            "MSE_v_p": losses.mean_squared_error(sg(gen["v_p"]), enc_d["parent_mean"]),
            "MSE_fg": losses.mean_squared_error(sg(gen["pre_foreground"]), enc_d["bypass"]),
            "MSE_bg": losses.mean_squared_error(sg(gen["pre_background"]), bypass_bg),
            "R_v": losses.code_regularizer(gen["v_bg"], gen["v_p"], gen["v_c"]),  # Eq. 14
            "R_M": losses.mask_regularizer(gen["mask"], cfg.mask_area_min, cfg.mask_area_max,
                                           cfg.mask_area_mean_max),
        })
        if cfg.mode_seeking_weight > 0:
            terms["MS"] = mode_seeking_term(gen["image"], z)
        if cfg.mask_boundary_weight > 0:
            terms["TV_M"] = losses.mask_boundary_length(gen["mask"])
        if self.mask_parent_head is not None:
            terms["CE_mask_parent"] = losses.cross_entropy(self.mask_parent_head(gen["mask"]),
                                                           parent)
        if self.mask_discriminator is not None:
            terms["M_adv"] = losses.generator_loss(self.mask_discriminator(gen["mask"]))
        rm_weight = cfg.rm_weight if cfg.use_rm_loss else 0.0
        terms["total"] = (
            terms["G"] + terms["CE_parent"] + terms["CE_child"] + terms["CE_info"]
            + terms["MSE_v_c"] + terms["MSE_v_p"] + terms["MSE_fg"] + terms["MSE_bg"]
            + cfg.rv_weight * terms["R_v"] + rm_weight * terms["R_M"]
            + (cfg.mode_seeking_weight * terms["MS"] if "MS" in terms else 0.0)
            + (cfg.mask_boundary_weight * terms["TV_M"] if "TV_M" in terms else 0.0)
            + (cfg.mask_parent_info_weight * terms["CE_mask_parent"]
               if "CE_mask_parent" in terms else 0.0)
            + (cfg.mask_adversarial_weight * terms["M_adv"] if "M_adv" in terms else 0.0))
        terms["mask_area"] = ops.mean(gen["mask"])  # diagnostic only, not in the total
        return {f"gen/{k}": v for k, v in terms.items()}

    def reconstruction_path(self, path, images, recon, targets=None, real_backgrounds=None):
        """Eq. 15-17 (+ adversarial terms against this path's D clones) for `recon`, the
        reconstruction of `images`. targets: for fake images, dict(v_p, v_c, background, mask)
        from the generation path (the background is the one `fake_scene` composited the object
        over); None for real images, which also get L_RM on their predicted
        masks when `real_mask_prior_weight` > 0, their edge-aware boundary length when
        `real_mask_edge_weight` > 0, E_p's parent head trained towards the
        code-tree parent of E_c's child when `parent_agreement_weight` > 0, and the paste of
        their objects over `real_backgrounds` judged by D_c when `real_paste_weight` > 0,
        and the images with their objects removed judged by D_bg when `real_removal_weight`
        > 0."""
        cfg, sg, enc = self.config, ops.stop_gradient, recon["encoded"]
        terms, bg_out, c_out = self.adversarial_losses(path, recon["image"],
                                                       recon["background"])
        v_p = targets["v_p"] if targets else recon["v_p"]
        v_c = targets["v_c"] if targets else recon["v_c"]
        per_dim = cfg.kl_per_dimension
        terms["VAE"] = (  # Eq. 15
            losses.gaussian_kl(enc["parent_mean"], enc["parent_log_var"], sg(v_p), per_dim)
            + losses.gaussian_kl(enc["child_mean"], enc["child_log_var"], sg(v_c), per_dim)
            + losses.gaussian_kl(enc["z_mean"], enc["z_log_var"], None, per_dim))
        terms["REC"] = losses.mean_absolute_error(images, recon["image"])  # Eq. 16
        _, d_c = self.discriminator_pairs()[path]
        terms["PER"] = losses.perceptual_loss(sg(d_c(images)["features"]), c_out["features"])
        if targets:
            terms["REC_mask"] = losses.mean_absolute_error(targets["mask"], recon["mask"])
            terms["REC"] += (losses.mean_absolute_error(targets["background"],
                                                        recon["background"])
                             + cfg.fake_mask_weight * terms["REC_mask"])
            d_bg, _ = self.discriminator_pairs()[path]
            terms["PER"] += losses.perceptual_loss(sg(d_bg(targets["background"])["features"]),
                                                   bg_out["features"])  # Eq. 17
        if not targets and cfg.real_mask_prior_weight > 0:
            terms["R_M"] = losses.mask_regularizer(recon["mask"], cfg.real_mask_floor,
                                                   cfg.mask_area_max, cfg.mask_area_mean_max)
        if not targets and cfg.real_mask_edge_weight > 0:
            terms["EDGE_M"] = losses.edge_aware_boundary_length(recon["mask"], images)
        if not targets and cfg.parent_agreement_weight > 0:
            tree_parent = tree_parent_probabilities(
                ops.softmax(ops.cast(enc["child_logits"], "float32"), axis=-1), cfg.num_parents)
            terms["CE_tree"] = losses.soft_cross_entropy(enc["parent_logits"], sg(tree_parent))
        if not targets and cfg.real_paste_weight > 0:
            _, d_c = self.discriminator_pairs()[path]
            pasted = self.paste(images, real_backgrounds, recon["mask"])
            terms["PASTE"] = losses.generator_loss(d_c(pasted)["real_fake"])
        if not targets and cfg.real_removal_weight > 0:
            d_bg, _ = self.discriminator_pairs()[path]
            removed = compose(images, sg(recon["background"]), recon["mask"])
            terms["REMOVAL"] = losses.generator_loss(d_bg(removed)["is_background"])
        terms["total"] = (terms["G"] + terms["REC"]
                          + (terms["VAE"] if cfg.use_vae_loss else 0.0)
                          + (terms["PER"] if cfg.use_per_loss else 0.0)
                          + (cfg.real_mask_prior_weight * terms["R_M"] if "R_M" in terms
                             else 0.0)
                          + (cfg.real_mask_edge_weight * terms["EDGE_M"] if "EDGE_M" in terms
                             else 0.0)
                          + (cfg.parent_agreement_weight * terms["CE_tree"]
                             if "CE_tree" in terms else 0.0)
                          + (cfg.real_paste_weight * terms["PASTE"] if "PASTE" in terms
                             else 0.0)
                          + (cfg.real_removal_weight * terms["REMOVAL"] if "REMOVAL" in terms
                             else 0.0))
        return {f"{path}/{k}": v for k, v in terms.items()}

    # --- one iteration ------------------------------------------------------------------------
    # Traced by fit() without autograph: every branch here tests a Python value (the config,
    # the active paths), so converting the step and everything it calls would only cost time
    # (about a quarter of each trace; docs/speed.md).
    @tf.autograph.experimental.do_not_convert
    def train_step(self, data):
        cfg, ae, sg = self.config, self.autoencoder, ops.stop_gradient
        real_images, real_backgrounds = data["image"], data["background"]
        batch = ops.shape(real_images)[0]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        child = self._draw(tf.random.stateless_uniform, (batch,), 1, minval=0,
                           maxval=cfg.num_children, dtype="int32")
        if cfg.mode_seeking_weight > 0:  # the second half repeats the first half's codes
            child = ops.concatenate([child[:batch - batch // 2], child[:batch // 2]], axis=0)
        z = self._normal((batch, cfg.z_dim), 2)
        if cfg.lr_decay_steps:
            self.set_learning_rates()

        with tf.GradientTape() as g_tape:
            gen = ae.generate(child, z, training=True)
            judged = self.shifted_composite(gen, 30) if cfg.fg_shift > 0 else gen["image"]
            recons = {}
            if "fake" in self.paths:
                fake, fake_background = self.fake_scene(gen, real_backgrounds)
                recons["fake"] = (fake, self._reconstruct(fake, 10))
            if "real" in self.paths:
                recons["real"] = (real_images, self._reconstruct(real_images, 20))

        # Discriminators first (on detached fakes), each path against its own pair.
        logs = {}
        with tf.GradientTape(persistent=True) as d_tape:
            d_totals = {}
            fakes = {"generation": (judged, gen["background"])}
            fakes.update({p: (r["image"], r["background"]) for p, (_, r) in recons.items()})
            for path, (fake_images, fake_bgs) in fakes.items():
                pasted = None
                if path == "real" and cfg.real_paste_weight > 0:
                    pasted = self.paste(real_images, real_backgrounds,
                                        sg(recons["real"][1]["mask"]))
                terms = self.discriminator_losses(path, real_images, real_backgrounds,
                                                  sg(fake_images), sg(fake_bgs), pasted)
                if path == "generation" and self.mask_discriminator is not None:
                    terms["D_generation/M"] = self.mask_discriminator_loss(real_images,
                                                                           gen["mask"])
                    terms["D_generation/total"] += terms["D_generation/M"]
                logs.update(terms)
                d_totals[path] = self.d_optimizers()[path].scale_loss(
                    terms[f"D_{path}/total"] / replicas)
        for path, total in d_totals.items():
            variables = self.discriminator_variables(path)
            grads = d_tape.gradient(total, variables)
            self.d_optimizers()[path].apply_gradients(_present(grads, variables))
        del d_tape

        # Then the generator side, against the updated discriminators.
        with g_tape:
            terms = self.generation_path(gen, child, z, judged)
            total = terms["gen/total"]
            if "fake" in recons:
                images, recon = recons["fake"]
                targets = {"v_p": gen["v_p"], "v_c": gen["v_c"],
                           "background": fake_background, "mask": sg(gen["mask"])}
                terms.update(self.reconstruction_path("fake", images, recon, targets))
                total += terms["fake/total"]
            if "real" in recons:
                images, recon = recons["real"]
                terms.update(self.reconstruction_path("real", images, recon,
                                                      real_backgrounds=real_backgrounds))
                total += terms["real/total"]
            scaled = self.g_optimizer.scale_loss(total / replicas)
        variables = self.generator_variables()
        grads = g_tape.gradient(scaled, variables)
        self.g_optimizer.apply_gradients(_present(grads, variables))
        self.global_step.assign_add(1)
        step = ops.cast(self.step, "float32")  # updates done, this one included
        ema_update(ae, self.ema, ops.minimum(cfg.ema_decay, (1.0 + step) / (10.0 + step)))

        logs.update(terms)
        logs["total"] = total
        if distribute.is_multi_worker(tf.distribute.get_strategy()):
            logs = compat.reducible_logs(logs)
        return logs

    def _reconstruct(self, images, site):
        batch = ops.shape(images)[0]
        cfg = self.config
        noise = {"parent": self._normal((batch, cfg.code_dim), site),
                 "child": self._normal((batch, cfg.code_dim), site + 1),
                 "z": self._normal((batch, cfg.z_dim), site + 2)}
        return self.autoencoder.reconstruct(images, self.sample_betas(batch, site + 3), noise,
                                            training=True)
