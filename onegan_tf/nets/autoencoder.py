"""The generator side of OneGAN: embeddings, generators and encoders wired into the two flows.

`generate` is the generation path (Eq. 1-5); `reconstruct` the reconstruction path
(Sec. 4.2 steps 1-5, with the mixup of Eq. 9). The training model keeps one `AutoEncoder` that
it trains and one that holds the EMA of its weights (used for samples, evaluation, export).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from onegan_tf.config import POSE_DIMS, Config
from onegan_tf.nets.encoders import BackgroundEncoder, ShapeEncoder, StyleEncoder
from onegan_tf.nets.generators import (
    AppearanceGenerator,
    BackgroundGenerator,
    PreImageGenerator,
    ShapeGenerator,
    apply_pose,
    compose,
    pose_transforms,
)
from onegan_tf.nets.layers import CodeEmbedding, Mixup


def parent_of(child, num_children: int, num_parents: int):
    """phi_p = floor(phi_c * N_P / N_C): FineGAN's tied hierarchy, safe for any N_C, N_P."""
    child = ops.cast(child, "int32")
    return (child * num_parents) // num_children


def tree_parent_probabilities(child_probs, num_parents: int):
    """[B, N_C] child probabilities -> [B, N_P]: each parent's share, summed over its children
    in the code tree (`parent_of`)."""
    num_children = child_probs.shape[-1]
    tree = tf.one_hot(parent_of(tf.range(num_children), num_children, num_parents),
                      num_parents)  # [N_C, N_P] membership
    return tf.matmul(child_probs, tree)


def hard_one_hot(logits):
    """one_hot(argmax(logits)): the predicted class selects v; no gradient reaches the logits."""
    # tf.argmax, not ops.argmax: Keras' version adds a BitwiseAnd (for -0.0) that TFLite lacks.
    return ops.one_hot(tf.argmax(logits, axis=-1), ops.shape(logits)[-1], dtype=logits.dtype)


def straight_through_one_hot(logits):
    """one_hot(argmax) forward, softmax gradient backward (the `straight_through` deviation)."""
    soft = ops.softmax(logits, axis=-1)
    return soft + ops.stop_gradient(hard_one_hot(logits) - soft)


def ablate_betas(config: Config, betas: dict) -> dict:
    """Applies the module ablations of Table 3b to Eq. 9's betas: the one place that reads
    `mixup_vectors`, `mixup_tensors` and `use_bypass` (training and inference alike).

    No mixup 1, 2: the encoders' vectors only (beta = 1). No mixup 3, 4: the bypasses only
    (beta = 1). No bypass: the pre-images only (beta = 0), so B_fg, B_bg get no gradient.
    """
    betas = dict(betas)
    ones, zeros = ops.ones_like(betas["beta1"]), ops.zeros_like(betas["beta1"])
    if not config.mixup_vectors:
        betas["beta1"] = betas["beta2"] = ones
    if not config.mixup_tensors:
        betas["beta3"] = betas["beta4"] = ones
    if not config.use_bypass:
        betas["beta3"] = betas["beta4"] = zeros
    return betas


@keras.saving.register_keras_serializable("onegan")
class AutoEncoder(keras.Model):
    """V_bg, V_p, V_c, G_bg0, G_bg1, G_fg0, G_fg1, G_fg2, E_p, E_c, E_bg (docs/design.md)."""

    def __init__(self, config: Config | dict, **kwargs):
        super().__init__(**kwargs)
        cfg = config if isinstance(config, Config) else Config(**config)
        self.config = cfg
        size, bypass, gf, norm = cfg.image_size, cfg.bypass_size, cfg.gf_dim, cfg.norm
        self.background_embedding = CodeEmbedding(cfg.num_parents, cfg.code_dim, name="V_bg")
        self.parent_embedding = CodeEmbedding(cfg.num_parents, cfg.code_dim, name="V_p")
        self.child_embedding = CodeEmbedding(cfg.num_children, cfg.code_dim, name="V_c")
        self.background_pre = PreImageGenerator(gf, bypass, norm, name="G_bg0")
        self.background_generator = BackgroundGenerator(gf, bypass, size, norm, name="G_bg1")
        self.foreground_pre = PreImageGenerator(gf, bypass, norm, name="G_fg0")
        fg = cfg.fg_gf_dim or gf
        self.shape_generator = ShapeGenerator(fg, bypass, size, norm, name="G_fg1")
        self.appearance_generator = AppearanceGenerator(
            fg, size, norm, mask_divisor=cfg.mask_divisor, name="G_fg2")
        self.shape_encoder = ShapeEncoder(cfg.ef_dim, gf, size, bypass, cfg.num_parents,
                                          cfg.code_dim, cfg.z_dim,
                                          context_blocks=cfg.encoder_context, name="E_p")
        self.style_encoder = StyleEncoder(cfg.ef_dim, gf, size, bypass, cfg.num_children,
                                          cfg.code_dim, name="E_c")
        self.background_encoder = BackgroundEncoder(cfg.ef_dim, gf, size, bypass, name="E_bg")
        self.mixup = Mixup(name="mixup")

    def networks(self) -> dict[str, keras.Model]:
        return {n.name: n for n in (
            self.background_embedding, self.parent_embedding, self.child_embedding,
            self.background_pre, self.background_generator, self.foreground_pre,
            self.shape_generator, self.appearance_generator, self.shape_encoder,
            self.style_encoder, self.background_encoder)}

    def build_all(self):
        """Creates every variable by running both flows once on a batch of one."""
        cfg = self.config
        child = ops.zeros((1,), "int32")
        z = ops.zeros((1, cfg.z_dim))
        self.generate(child, z)
        self.reconstruct(ops.zeros((1, cfg.image_size, cfg.image_size, 3)))
        self.built = True

    def call(self, images, training=None):
        return self.reconstruct(images, training=training)

    # --- codes -------------------------------------------------------------------------
    def one_hots(self, child):
        """child ids [B] -> (e_p, e_c) one-hots; e_bg = e_p (Eq. 1)."""
        cfg = self.config
        parent = parent_of(child, cfg.num_children, cfg.num_parents)
        return ops.one_hot(parent, cfg.num_parents), ops.one_hot(child, cfg.num_children)

    def embed(self, parent_one_hot, child_one_hot):
        """Eq. 2: (v_bg, v_p, v_c); the background code follows the parent."""
        return (self.background_embedding(parent_one_hot), self.parent_embedding(parent_one_hot),
                self.child_embedding(child_one_hot))

    # --- the two halves of the decoder --------------------------------------------------------
    def pose(self, z, size: int):
        """The object's pose for noise z as [B, 8] transforms on a `size`-pixel grid (the
        `pose_*` options), or None when the object layer does not move (`object_pose` off)."""
        cfg = self.config
        if not cfg.object_pose:
            return None
        return pose_transforms(z, size, cfg.pose_rotation, cfg.pose_scale, cfg.pose_shift)

    def posed_pre_image(self, pre_image, z):
        """A_fg moved to where the object layer drawn from it lands in the image: the pre-image
        that E_p's bypass B_fg stands for (B_fg is read off the image, where the object is
        posed; the generator draws A_fg in the canonical pose)."""
        pose = self.pose(z, pre_image.shape[1])
        return pre_image if pose is None else apply_pose(pre_image, pose)

    def decode_foreground(self, v_p, v_c, z, bypass=None, beta=None, training=None):
        """Eq. 4 (with mixup 3 when a bypass B_fg is given): -> (A_fg, I_fg, I_m).

        A_fg is posed by z before the decoder with `pose_in_pre_image` (generation and
        reconstruction alike), and before mixup 3 with `posed_bypass`, as the bypass read off
        the posed image is. Otherwise generation's caller moves the decoded layer. Returns the
        canonical A_fg. With `pose_blind`, G_fg0 sees z without its pose dimensions."""
        cfg = self.config
        z_fg = z
        if cfg.pose_blind:
            z_fg = ops.concatenate([ops.zeros_like(z[:, :POSE_DIMS]), z[:, POSE_DIMS:]], axis=-1)
        pre_image = self.foreground_pre([v_p, z_fg], training=training)  # A_fg
        drawn = pre_image
        if cfg.pose_in_pre_image or (bypass is not None and cfg.bypass_is_posed):
            drawn = self.posed_pre_image(pre_image, z)
        if bypass is not None:
            drawn = self.mixup(drawn, bypass, beta)
        features = self.shape_generator([drawn, v_p], training=training)
        foreground, mask = self.appearance_generator([features, v_c], training=training)
        return pre_image, foreground, mask

    def decode_background(self, v_bg, z, bypass=None, beta=None, training=None):
        """Eq. 3 (with mixup 4 when a bypass B_bg is given): -> (A_bg, I_bg)."""
        pre_image = self.background_pre([v_bg, z], training=training)  # A_bg
        mixed = pre_image if bypass is None else self.mixup(pre_image, bypass, beta)
        return pre_image, self.background_generator(mixed, training=training)

    # --- generation path (Eq. 1-5) --------------------------------------------------------
    def generate(self, child, z, training=None):
        """child ids [B] int, z [B, d_z] -> dict with image/foreground/background [B, H, W, 3]
        in [-1, 1], mask [B, H, W, 1] in [0, 1], the pre-images and the codes. With
        `posed_bypass`, "pre_foreground" is A_fg moved by the pose (`posed_pre_image`)."""
        parent_one_hot, child_one_hot = self.one_hots(child)
        v_bg, v_p, v_c = self.embed(parent_one_hot, child_one_hot)
        cfg = self.config
        pre_fg, foreground, mask = self.decode_foreground(v_p, v_c, z, training=training)
        if cfg.object_pose and not cfg.pose_in_pre_image:  # the object layer moves together
            moved = apply_pose(ops.concatenate([foreground, mask], axis=-1),
                               self.pose(z, cfg.image_size))  # one warp
            foreground, mask = moved[..., :3], moved[..., 3:]
        if cfg.bypass_is_posed:
            pre_fg = self.posed_pre_image(pre_fg, z)  # Eq. 13's target for E_p's bypass
        pre_bg, background = self.decode_background(v_bg, z, training=training)
        return {"image": compose(background, foreground, mask), "foreground": foreground,
                "mask": mask, "background": background, "pre_foreground": pre_fg,
                "pre_background": pre_bg, "v_bg": v_bg, "v_p": v_p, "v_c": v_c}

    # --- encoders -----------------------------------------------------------------------------
    def encode(self, images, training=None):
        """E_p and E_c (Eq. 7-8) on images [B, H, W, 3] in [-1, 1]: merged output dicts."""
        return {**self.shape_encoder(images, training=training),
                **self.style_encoder(images, training=training)}

    # --- reconstruction path (Sec. 4.2) ---------------------------------------------------
    def reconstruct(self, images, betas=None, noise=None, child_one_hot=None, training=None,
                    encoded=None):
        """Reconstruction path on images [B, H, W, 3] in [-1, 1].

        betas: dict beta1..beta4, each [B] (Eq. 9); None means inference (all 1: encoder
          vectors and bypasses only). noise: dict of standard-normal draws for the
          reparameterisation ("parent", "child", "z"); None uses the means.
        child_one_hot: overrides the predicted child code (translation, Fig. 6); with the
          default betas, beta2 is then 0 so that v_c comes from the child embedding.
        Returns image/foreground/mask/background, the encoder outputs and the codes.
        """
        batch = ops.shape(images)[0]
        if betas is None:
            ones = ops.ones((batch,))
            betas = {k: ones for k in ("beta1", "beta2", "beta3", "beta4")}
            if child_one_hot is not None:  # the swapped code must reach G_fg2: v_c from V_c
                betas["beta2"] = ops.zeros((batch,))
        enc = encoded if encoded is not None else self.encode(images, training=training)

        def sample(mean, log_var, key):  # reparameterisation trick
            if noise is None:
                return mean
            return mean + ops.exp(0.5 * log_var) * noise[key]

        # (1) the predicted classes select the embeddings; the encoders' Gaussians give v-hat.
        # The paper trains e-hat only with Eq. 12: no reconstruction gradient reaches the logits
        # unless the `straight_through` deviation is on.
        select = straight_through_one_hot if self.config.straight_through else hard_one_hot
        parent_one_hot = select(enc["parent_logits"])
        if child_one_hot is None:
            child_one_hot = select(enc["child_logits"])
        v_bg, v_p, v_c = self.embed(parent_one_hot, child_one_hot)
        v_p_hat = sample(enc["parent_mean"], enc["parent_log_var"], "parent")
        v_c_hat = sample(enc["child_mean"], enc["child_log_var"], "child")
        z_hat = sample(enc["z_mean"], enc["z_log_var"], "z")
        v_p_mix = self.mixup(v_p, v_p_hat, betas["beta1"])  # mixup 1
        v_c_mix = self.mixup(v_c, v_c_hat, betas["beta2"])  # mixup 2
        # (2) foreground and mask, with mixup 3 between A_fg and the bypass B_fg.
        _, foreground, mask = self.decode_foreground(
            v_p_mix, v_c_mix, z_hat, enc["bypass"], betas["beta3"], training=training)
        # (3) background bypass from image + mask; (4) background with mixup 4.
        bypass_bg = self.background_encoder([images, mask], training=training)  # B_bg
        _, background = self.decode_background(v_bg, z_hat, bypass_bg, betas["beta4"],
                                               training=training)
        # (5) compose.
        return {"image": compose(background, foreground, mask), "foreground": foreground,
                "mask": mask, "background": background, "encoded": enc,
                "v_p": v_p, "v_c": v_c, "v_bg": v_bg}

    def get_config(self):
        import dataclasses
        return {**super().get_config(), "config": dataclasses.asdict(self.config)}

    # A `.keras` file (keras.saving.save_model / load_model): the variables are created by
    # build_all, not by a call on an input shape, so the file records that and loading
    # re-creates them before it reads the weights.
    def get_build_config(self):
        return {"build_all": True}

    def build_from_config(self, config):
        if config.get("build_all"):
            self.build_all()


def copy_weights(source: keras.Model, target: keras.Model):
    """target <- source, variable by variable (same architecture)."""
    for s, t in zip(source.weights, target.weights, strict=True):
        t.assign(s)


def ema_update(source: keras.Model, target: keras.Model, decay):
    """target <- decay * target + (1 - decay) * source (trainable weights; others copied)."""
    decay = tf.cast(decay, "float32")
    for s, t in zip(source.weights, target.weights, strict=True):
        if s.trainable:
            t.assign(decay * t + (1.0 - decay) * s)
        else:
            t.assign(s)
