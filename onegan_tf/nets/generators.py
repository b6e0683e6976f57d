"""Generators (Eq. 3-5): G_bg0/G_bg1 for the background, G_fg0/G_fg1/G_fg2 for the object.

Widths follow FineGAN: 16*gf channels at 4x4, halving with each doubling of resolution
(gf/2 channels at 128 px). Networks know nothing of losses.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from onegan_tf.config import POSE_DIMS
from onegan_tf.nets.layers import ConvGLU, NormGLU, ResBlock

MASK_BIAS_INIT = -1.0


def generator_width(gf_dim: int, resolution: int) -> int:
    """Channels of generator features at `resolution` (FineGAN: 16*ngf at 4x4, ngf/2 at 128)."""
    return max(4, min(16 * gf_dim, gf_dim * 64 // resolution))


def _num_doublings(src: int, dst: int) -> int:
    n = (dst // src).bit_length() - 1
    if src * 2**n != dst:
        raise ValueError(f"cannot upsample {src} to {dst} by doubling")
    return n


@keras.saving.register_keras_serializable("onegan")
class PreImageGenerator(keras.Model):
    """G_bg0 / G_fg0: (code [B, d], z [B, d_z]) -> pre-image A [B, s, s, C] (s = bypass size).

    FC to 4x4, then GLU up-blocks to the pre-image resolution.
    """

    def __init__(self, gf_dim: int, out_size: int, norm: str = "glu_layernorm", **kwargs):
        super().__init__(**kwargs)
        self.gf_dim, self.out_size, self.norm_kind = gf_dim, out_size, norm
        self.init_channels = generator_width(gf_dim, 4)
        self.fc = keras.layers.Dense(4 * 4 * 2 * self.init_channels, use_bias=False, name="fc")
        self.fc_glu = NormGLU(norm, name="fc_glu")
        self.ups = [
            ConvGLU(generator_width(gf_dim, 4 * 2 ** (i + 1)), norm, upsample=True, name=f"up{i}")
            for i in range(_num_doublings(4, out_size))
        ]

    @property
    def out_channels(self) -> int:
        return generator_width(self.gf_dim, self.out_size)

    def call(self, inputs, training=None):
        code, z = inputs
        x = self.fc(ops.concatenate([code, ops.cast(z, code.dtype)], axis=-1))
        x = ops.reshape(x, (-1, 4, 4, 2 * self.init_channels))
        x = self.fc_glu(x, training=training)
        for up in self.ups:
            x = up(x, training=training)
        return x

    def get_config(self):
        return {**super().get_config(), "gf_dim": self.gf_dim, "out_size": self.out_size,
                "norm": self.norm_kind}


@keras.saving.register_keras_serializable("onegan")
class BackgroundGenerator(keras.Model):
    """G_bg1: pre-image A_bg (or its mixup with B_bg) -> I_bg [B, H, W, 3] in [-1, 1] (Eq. 3)."""

    def __init__(self, gf_dim: int, in_size: int, image_size: int, norm: str = "glu_layernorm",
                 **kwargs):
        super().__init__(**kwargs)
        self.gf_dim, self.in_size, self.image_size, self.norm_kind = (
            gf_dim, in_size, image_size, norm)
        self.ups = [
            ConvGLU(generator_width(gf_dim, in_size * 2 ** (i + 1)), norm, upsample=True,
                    name=f"up{i}")
            for i in range(_num_doublings(in_size, image_size))
        ]
        self.refine = ConvGLU(generator_width(gf_dim, image_size), norm, name="refine")
        self.to_rgb = keras.layers.Conv2D(3, 3, padding="same", name="to_rgb")

    def call(self, pre_image, training=None):
        x = pre_image
        for up in self.ups:
            x = up(x, training=training)
        x = self.refine(x, training=training)
        return ops.cast(ops.tanh(self.to_rgb(x)), "float32")

    def get_config(self):
        return {**super().get_config(), "gf_dim": self.gf_dim, "in_size": self.in_size,
                "image_size": self.image_size, "norm": self.norm_kind}


@keras.saving.register_keras_serializable("onegan")
class ShapeGenerator(keras.Model):
    """G_fg1 (FineGAN parent stage): (A_fg, v_p) -> shape features [B, H, W, C].

    Up-blocks to full resolution, tile v_p, joint conv, two residual blocks.
    """

    def __init__(self, gf_dim: int, in_size: int, image_size: int, norm: str = "glu_layernorm",
                 num_residual: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.gf_dim, self.in_size, self.image_size, self.norm_kind = (
            gf_dim, in_size, image_size, norm)
        self.num_residual = num_residual
        width = generator_width(gf_dim, image_size)
        self.ups = [
            ConvGLU(generator_width(gf_dim, in_size * 2 ** (i + 1)), norm, upsample=True,
                    name=f"up{i}")
            for i in range(_num_doublings(in_size, image_size))
        ]
        self.joint = ConvGLU(width, norm, name="joint")
        self.residual = [ResBlock(norm, name=f"res{i}") for i in range(num_residual)]

    def call(self, inputs, training=None):
        pre_image, parent_code = inputs
        x = pre_image
        for up in self.ups:
            x = up(x, training=training)
        x = self.joint(x, code=parent_code, training=training)  # v_p tiled over x, joint conv
        for block in self.residual:
            x = block(x, training=training)
        return x

    def get_config(self):
        return {**super().get_config(), "gf_dim": self.gf_dim, "in_size": self.in_size,
                "image_size": self.image_size, "norm": self.norm_kind,
                "num_residual": self.num_residual}


@keras.saving.register_keras_serializable("onegan")
class AppearanceGenerator(keras.Model):
    """G_fg2 (FineGAN child stage): (shape features, v_c) -> (I_fg [-1, 1], I_m [0, 1]) (Eq. 4).

    Tile v_c, joint conv, two residual blocks, then an RGB head (tanh) and a mask head (sigmoid).
    With mask_divisor > 1 the mask head's logits are coarsened (`coarse_logits`) before the
    sigmoid: no part of the mask is finer than about mask_divisor pixels.
    """

    def __init__(self, gf_dim: int, image_size: int, norm: str = "glu_layernorm",
                 num_residual: int = 2, mask_divisor: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.gf_dim, self.image_size, self.norm_kind = gf_dim, image_size, norm
        self.num_residual, self.mask_divisor = num_residual, mask_divisor
        self.joint = ConvGLU(generator_width(gf_dim, image_size), norm, name="joint")
        self.residual = [ResBlock(norm, name=f"res{i}") for i in range(num_residual)]
        self.to_rgb = keras.layers.Conv2D(3, 3, padding="same", name="to_rgb")
        # Masks start small (sigmoid(-1) = 0.27): the background generator learns the scene
        # first and the object is what the foreground adds. With a symmetric start some runs
        # settled on inverted masks (the foreground drawing the background around a hole).
        self.to_mask = keras.layers.Conv2D(
            1, 3, padding="same", name="to_mask",
            bias_initializer=keras.initializers.Constant(MASK_BIAS_INIT))

    def call(self, inputs, training=None):
        features, child_code = inputs
        x = self.joint(features, code=child_code, training=training)  # v_c tiled, joint conv
        for block in self.residual:
            x = block(x, training=training)
        foreground = ops.cast(ops.tanh(self.to_rgb(x)), "float32")
        logits = ops.cast(self.to_mask(x), "float32")
        if self.mask_divisor > 1:
            logits = coarse_logits(logits, self.mask_divisor)
        return foreground, ops.sigmoid(logits)

    def get_config(self):
        return {**super().get_config(), "gf_dim": self.gf_dim, "image_size": self.image_size,
                "norm": self.norm_kind, "num_residual": self.num_residual,
                "mask_divisor": self.mask_divisor}


def coarse_logits(logits, divisor: int):
    """[B, H, W, 1] mask logits averaged over divisor x divisor cells, then resized back to
    H x W bilinearly: a smooth map whose outline (the 0 level) can still fall anywhere between
    pixels, but which has no stripe or dot narrower than about `divisor` pixels."""
    height, width = logits.shape[1], logits.shape[2]
    cells = ops.average_pool(logits, divisor, strides=divisor, padding="valid")
    return ops.image.resize(cells, (height, width), interpolation="bilinear")


def pose_transforms(z, image_size: int, rotation: float, scale: float, shift: float):
    """The object's pose from the first four noise dimensions (the `pose_*` options).

    Each of z[:, 0:4] (standard normal) becomes a uniform a in (-1, 1) through the normal CDF:
    rotation a0 * `rotation` degrees, scale `scale` ** a1, shift a2, a3 * `shift` image sides,
    about the image centre; z = 0 is the identity. -> [B, 8] projective transforms that map an
    output pixel to the input pixel it samples (keras.ops.image.affine_transform's convention).
    """
    a = ops.erf(ops.cast(z[:, :POSE_DIMS], "float32") / math.sqrt(2.0))
    angle = a[:, 0] * (rotation * math.pi / 180.0)
    inv_scale = ops.exp(-a[:, 1] * math.log(scale))
    tx, ty = a[:, 2] * (shift * image_size), a[:, 3] * (shift * image_size)
    cos, sin = ops.cos(angle) * inv_scale, ops.sin(angle) * inv_scale
    # input = R(-angle) / scale @ (output - centre - t) + centre
    centre = (image_size - 1) / 2.0
    ox, oy = centre + tx, centre + ty
    zeros = ops.zeros_like(cos)
    return ops.stack([cos, sin, centre - cos * ox - sin * oy,
                      -sin, cos, centre + sin * ox - cos * oy, zeros, zeros], axis=1)


def apply_pose(images, transforms):
    """images [B, H, W, C] moved by `transforms` [B, 8] (bilinear; outside the input reads 0).

    The sampling of keras.ops.image.affine_transform(..., "bilinear", fill_mode="constant"),
    written with gathers: TF's ImageProjectiveTransformV3 has no XLA kernel, so the op would
    break --jit_compile. Each output pixel reads its four neighbours around the input point;
    a neighbour outside the image reads 0.
    """
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    t = ops.cast(transforms, "float32")
    ys, xs = ops.meshgrid(ops.arange(height, dtype="float32"),
                          ops.arange(width, dtype="float32"), indexing="ij")
    xs, ys = ops.reshape(xs, (1, -1)), ops.reshape(ys, (1, -1))
    k = t[:, 6:7] * xs + t[:, 7:8] * ys + 1.0
    x_in = (t[:, 0:1] * xs + t[:, 1:2] * ys + t[:, 2:3]) / k  # [B, H * W]
    y_in = (t[:, 3:4] * xs + t[:, 4:5] * ys + t[:, 5:6]) / k
    x0, y0 = ops.floor(x_in), ops.floor(y_in)
    fx, fy = x_in - x0, y_in - y0
    flat = ops.reshape(images, (-1, height * width, channels))
    moved = 0.0
    for dy, dx, weight in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)),
                           (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        inside = (xi >= 0) & (xi <= width - 1) & (yi >= 0) & (yi <= height - 1)
        index = ops.cast(ops.clip(yi, 0, height - 1) * width + ops.clip(xi, 0, width - 1),
                         "int32")
        values = ops.take_along_axis(
            flat, ops.repeat(ops.expand_dims(index, -1), channels, axis=-1), axis=1)
        weight = ops.where(inside, weight, 0.0)
        moved = moved + values * ops.cast(ops.expand_dims(weight, -1), flat.dtype)
    return ops.reshape(moved, (-1, height, width, channels))


def compose(background, foreground, mask):
    """Eq. 5: I = I_bg * (1 - I_m) + I_fg * I_m."""
    return background * (1.0 - mask) + foreground * mask
