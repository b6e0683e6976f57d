"""Discriminators: D_bg (FineGAN's patch D) and D_c (FineGAN's D2 with its InfoGAN head).

D_bg has no normalisation (as FineGAN's background D). FineGAN's D2 normalises every conv after
the first with BatchNorm; here `d_norm` chooses a per-example layer norm in its place (batch
statistics would mix the three paths) or none. `minibatch_stddev` adds one feature map, the
batch standard deviation of D_c's last features, so that D_c can see a batch without variety.
Every output is float32 logits.
"""

from __future__ import annotations

import keras
from keras import ops


def _lrelu(x):
    return keras.activations.leaky_relu(x, 0.2)


@keras.saving.register_keras_serializable("onegan")
class BackgroundDiscriminator(keras.Model):
    """D_bg: x [B, H, W, 3] -> dict(real_fake A [B, h, w, 1], is_background B [B, h, w, 1],
    features C [B, h, w, 4*df]).

    Three 4x4 convs (strides 2, 2, 1) then 4x4 heads: a 34-pixel receptive field as in FineGAN
    ("same" padding keeps a patch grid at 32 px, where FineGAN's "valid" convs would leave none).
    """

    def __init__(self, df_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.df_dim = df_dim
        self.convs = [
            keras.layers.Conv2D(df_dim * m, 4, strides=s, padding="same", name=f"conv{i}")
            for i, (m, s) in enumerate([(1, 2), (2, 2), (4, 1)])
        ]
        self.real_fake = keras.layers.Conv2D(1, 4, padding="same", name="real_fake")
        self.is_background = keras.layers.Conv2D(1, 4, padding="same", name="is_background")

    def call(self, images):
        x = images
        for conv in self.convs:
            x = _lrelu(conv(x))
        return {"real_fake": ops.cast(self.real_fake(x), "float32"),
                "is_background": ops.cast(self.is_background(x), "float32"),
                "features": ops.cast(x, "float32")}

    def get_config(self):
        return {**super().get_config(), "df_dim": self.df_dim}


@keras.saving.register_keras_serializable("onegan")
class ObjectDiscriminator(keras.Model):
    """D_c: x [B, H, W, 3] -> dict(real_fake A [B], child_logits B [B, N_C], features C).

    Stride-2 convs down to 4x4 (widths df, 2df, ... capped at 8df). C is the hidden map at
    H/4 (the perceptual features of Eq. 17). B is the InfoGAN head; its own variables
    (`info_variables`) are trained by the generator-side loss, as in FineGAN.
    """

    def __init__(self, df_dim: int, image_size: int, num_children: int, norm: str = "none",
                 minibatch_stddev: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.df_dim, self.image_size, self.num_children = df_dim, image_size, num_children
        self.norm_kind, self.minibatch_stddev = norm, minibatch_stddev
        self.convs, self.norms = [], []
        size, width = image_size, df_dim
        while size > 4:
            size //= 2
            self.convs.append(keras.layers.Conv2D(width, 4, strides=2, padding="same",
                                                  name=f"down{size}"))
            first = len(self.convs) == 1
            self.norms.append(None if norm == "none" or first else
                              keras.layers.GroupNormalization(groups=1, epsilon=1e-5,
                                                              name=f"norm{size}"))
            width = min(2 * width, 8 * df_dim)
        self.feature_index = min(1, len(self.convs) - 1)
        self.real_fake = keras.layers.Conv2D(1, 4, padding="valid", name="real_fake")
        self.info_conv = keras.layers.Conv2D(8 * df_dim, 3, padding="same", name="info_conv")
        self.info_logits = keras.layers.Conv2D(num_children, 4, padding="valid",
                                               name="info_logits")

    @property
    def info_variables(self):
        return self.info_conv.trainable_variables + self.info_logits.trainable_variables

    @property
    def adversarial_variables(self):
        info = {id(v) for v in self.info_variables}
        return [v for v in self.trainable_variables if id(v) not in info]

    def call(self, images):
        x, features = images, None
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = conv(x)
            x = _lrelu(x if norm is None else norm(x))
            if i == self.feature_index:
                features = x
        batch = ops.shape(images)[0]
        head = x
        if self.minibatch_stddev:  # one map: mean over features of the std over the batch
            std = ops.sqrt(ops.var(ops.cast(x, "float32"), axis=0) + 1e-8)
            std = ops.cast(ops.mean(std), x.dtype)
            head = ops.concatenate([x, ops.ones_like(x[..., :1]) * std], axis=-1)
        real_fake = ops.reshape(self.real_fake(head), (batch,))
        info = self.info_logits(_lrelu(self.info_conv(x)))
        return {"real_fake": ops.cast(real_fake, "float32"),
                "child_logits": ops.cast(ops.reshape(info, (batch, self.num_children)), "float32"),
                "features": ops.cast(features, "float32")}

    def get_config(self):
        return {**super().get_config(), "df_dim": self.df_dim, "image_size": self.image_size,
                "num_children": self.num_children, "norm": self.norm_kind,
                "minibatch_stddev": self.minibatch_stddev}


@keras.saving.register_keras_serializable("onegan")
class MaskParentClassifier(keras.Model):
    """Q_p: mask [B, H, W, 1] -> parent logits [B, N_P] (the `mask_parent_info_weight` option).

    An InfoGAN head on the generated mask alone, trained with the generators (FineGAN's parent
    stage has the like on its masked foreground): the mask's shape must tell the parent, which
    the background (whose code follows the parent) cannot do for it. Stride-2 convs to 4x4.
    """

    def __init__(self, df_dim: int, image_size: int, num_parents: int, **kwargs):
        super().__init__(**kwargs)
        self.df_dim, self.image_size, self.num_parents = df_dim, image_size, num_parents
        self.convs = []
        size, width = image_size, df_dim
        while size > 4:
            size //= 2
            self.convs.append(keras.layers.Conv2D(width, 4, strides=2, padding="same",
                                                  name=f"down{size}"))
            width = min(2 * width, 8 * df_dim)
        self.logits = keras.layers.Dense(num_parents, name="parent_logits")

    def call(self, masks):
        x = masks
        for conv in self.convs:
            x = _lrelu(conv(x))
        return ops.cast(self.logits(ops.reshape(x, (ops.shape(masks)[0], -1))), "float32")

    def get_config(self):
        return {**super().get_config(), "df_dim": self.df_dim, "image_size": self.image_size,
                "num_parents": self.num_parents}


@keras.saving.register_keras_serializable("onegan")
class MaskDiscriminator(MaskParentClassifier):
    """D_m: mask [B, H, W, 1] -> real/fake logit [B, 1] (the `mask_adversarial_weight` option).
    Q_p's network with one output; the "real" masks are those the model predicts for real
    images, so it needs no labels."""

    def __init__(self, df_dim: int, image_size: int, **kwargs):
        kwargs.pop("num_parents", None)
        super().__init__(df_dim, image_size, 1, **kwargs)
