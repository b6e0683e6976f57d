"""Encoders (Eq. 6-8): E_p (shape), E_c (style) and E_bg (background, reads image + mask).

Convolutional stacks with per-example normalisation (no batch statistics: the three paths of a
step see very different images). Gaussian heads return the mean and the log-variance
(sigma^2 = exp(log_var)), the numerically safe form of (mu, sigma).
"""

from __future__ import annotations

import keras
from keras import ops

from onegan_tf.nets.generators import generator_width


def encoder_width(ef_dim: int, resolution: int) -> int:
    """Channels at `resolution`: ef at 64 px, doubling per halving, capped at 8*ef."""
    return max(4, min(8 * ef_dim, max(ef_dim // 2, ef_dim * 64 // resolution)))


def _group_norm(channels: int, name: str):
    return keras.layers.GroupNormalization(groups=min(8, channels), epsilon=1e-5, name=name)


@keras.saving.register_keras_serializable("onegan")
class DownStack(keras.layers.Layer):
    """Stem conv at full resolution, then stride-2 convs (+ GroupNorm, LeakyReLU) to `out_size`."""

    def __init__(self, ef_dim: int, in_size: int, out_size: int, **kwargs):
        super().__init__(**kwargs)
        self.ef_dim, self.in_size, self.out_size = ef_dim, in_size, out_size
        self.stem = keras.layers.Conv2D(encoder_width(ef_dim, in_size), 3, padding="same",
                                        name="stem")
        self.convs, self.norms = [], []
        size = in_size
        while size > out_size:
            size //= 2
            width = encoder_width(ef_dim, size)
            self.convs.append(keras.layers.Conv2D(width, 4, strides=2, padding="same",
                                                  use_bias=False, name=f"down{size}"))
            self.norms.append(_group_norm(width, name=f"norm{size}"))

    def call(self, x):
        x = keras.activations.leaky_relu(self.stem(x), 0.2)
        for conv, norm in zip(self.convs, self.norms):
            x = keras.activations.leaky_relu(norm(conv(x)), 0.2)
        return x

    def get_config(self):
        return {**super().get_config(), "ef_dim": self.ef_dim, "in_size": self.in_size,
                "out_size": self.out_size}


@keras.saving.register_keras_serializable("onegan")
class ContextStack(keras.layers.Layer):
    """Residual 3x3 convs at one resolution with dilations 1, 2, 4, ... (capped at size/2).

    `blocks` of them widen the receptive field of each output position to the whole map:
    four at 16 x 16 see 2 * (1 + 2 + 4 + 8) = 30 positions across. 0 blocks = identity.
    """

    def __init__(self, blocks: int, size: int, **kwargs):
        super().__init__(**kwargs)
        self.blocks, self.size = blocks, size
        self.dilations = [min(2 ** i, max(1, size // 2)) for i in range(blocks)]
        self.convs, self.norms = [], []

    def build(self, x_shape):
        width = x_shape[-1]
        for i, rate in enumerate(self.dilations):
            conv = keras.layers.Conv2D(width, 3, padding="same", dilation_rate=rate,
                                       use_bias=False, name=f"context{i}")
            conv.build(x_shape)
            norm = _group_norm(width, name=f"context_norm{i}")
            norm.build(x_shape)
            self.convs.append(conv)
            self.norms.append(norm)

    def call(self, x):
        for conv, norm in zip(self.convs, self.norms):
            x = x + keras.activations.leaky_relu(norm(conv(x)), 0.2)
        return x

    def get_config(self):
        return {**super().get_config(), "blocks": self.blocks, "size": self.size}


class _Encoder(keras.Model):
    """Shared constructor/config of the three encoders."""

    def __init__(self, ef_dim: int, gf_dim: int, image_size: int, bypass_size: int, **kwargs):
        super().__init__(**kwargs)
        self.ef_dim, self.gf_dim = ef_dim, gf_dim
        self.image_size, self.bypass_size = image_size, bypass_size

    def _bypass_head(self):
        # B has the shape of the pre-image A it replaces in the mixup (Eq. 9).
        return keras.layers.Conv2D(generator_width(self.gf_dim, self.bypass_size), 3,
                                   padding="same", name="bypass")

    def get_config(self):
        return {**super().get_config(), "ef_dim": self.ef_dim, "gf_dim": self.gf_dim,
                "image_size": self.image_size, "bypass_size": self.bypass_size}


def _gaussian_heads(dim: int, prefix: str):
    return (keras.layers.Dense(dim, name=f"{prefix}_mean"),
            keras.layers.Dense(dim, name=f"{prefix}_log_var",
                               kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3)))


@keras.saving.register_keras_serializable("onegan")
class ShapeEncoder(_Encoder):
    """E_p (Eq. 7): image [B, H, W, 3] -> dict(parent_logits [B, N_P], parent_mean/log_var [B, d_p],
    bypass B_fg [B, s, s, C], z_mean/z_log_var [B, d_z]).

    `context_blocks` residual dilated convs (ContextStack) after the trunk let every bypass
    position see the whole object, not only its ~20-pixel neighbourhood (0 = none).
    """

    def __init__(self, ef_dim, gf_dim, image_size, bypass_size, num_parents: int,
                 code_dim: int, z_dim: int, context_blocks: int = 0, **kwargs):
        super().__init__(ef_dim, gf_dim, image_size, bypass_size, **kwargs)
        self.num_parents, self.code_dim, self.z_dim = num_parents, code_dim, z_dim
        self.context_blocks = context_blocks
        self.to_bypass_res = DownStack(ef_dim, image_size, bypass_size, name="trunk")
        self.context = (ContextStack(context_blocks, bypass_size, name="context")
                        if context_blocks else None)
        self.bypass = self._bypass_head()
        self.to_vector = DownStack(ef_dim, bypass_size, 4, name="head_trunk")
        self.logits = keras.layers.Dense(num_parents, name="parent_logits")
        self.mean, self.log_var = _gaussian_heads(code_dim, "parent")
        self.z_mean, self.z_log_var = _gaussian_heads(z_dim, "z")

    def call(self, images):
        features = self.to_bypass_res(images)
        if self.context is not None:
            features = self.context(features)
        h = ops.reshape(self.to_vector(features), (ops.shape(images)[0], -1))
        f32 = lambda t: ops.cast(t, "float32")  # noqa: E731
        return {
            "parent_logits": f32(self.logits(h)),
            "parent_mean": f32(self.mean(h)), "parent_log_var": f32(self.log_var(h)),
            "bypass": self.bypass(features),
            "z_mean": f32(self.z_mean(h)), "z_log_var": f32(self.z_log_var(h)),
        }

    def get_config(self):
        return {**super().get_config(), "num_parents": self.num_parents,
                "code_dim": self.code_dim, "z_dim": self.z_dim,
                "context_blocks": self.context_blocks}


@keras.saving.register_keras_serializable("onegan")
class StyleEncoder(_Encoder):
    """E_c (Eq. 8): image -> dict(child_logits [B, N_C], child_mean/log_var [B, d_c])."""

    def __init__(self, ef_dim, gf_dim, image_size, bypass_size, num_children: int,
                 code_dim: int, **kwargs):
        super().__init__(ef_dim, gf_dim, image_size, bypass_size, **kwargs)
        self.num_children, self.code_dim = num_children, code_dim
        self.trunk = DownStack(ef_dim, image_size, 4, name="trunk")
        self.logits = keras.layers.Dense(num_children, name="child_logits")
        self.mean, self.log_var = _gaussian_heads(code_dim, "child")

    def call(self, images):
        h = ops.reshape(self.trunk(images), (ops.shape(images)[0], -1))
        f32 = lambda t: ops.cast(t, "float32")  # noqa: E731
        return {"child_logits": f32(self.logits(h)),
                "child_mean": f32(self.mean(h)), "child_log_var": f32(self.log_var(h))}

    def get_config(self):
        return {**super().get_config(), "num_children": self.num_children,
                "code_dim": self.code_dim}


@keras.saving.register_keras_serializable("onegan")
class BackgroundEncoder(_Encoder):
    """E_bg (Eq. 6): (image [B, H, W, 3], mask [B, H, W, 1]) -> bypass B_bg [B, s, s, C]."""

    def __init__(self, ef_dim, gf_dim, image_size, bypass_size, **kwargs):
        super().__init__(ef_dim, gf_dim, image_size, bypass_size, **kwargs)
        self.trunk = DownStack(ef_dim, image_size, bypass_size, name="trunk")
        self.bypass = self._bypass_head()

    def call(self, inputs):
        images, mask = inputs
        return self.bypass(self.trunk(ops.concatenate([images, ops.cast(mask, images.dtype)], -1)))
