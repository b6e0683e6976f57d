"""Building blocks shared by the networks: normalisation + GLU, up/residual blocks, mixup.

All layers are batch-size independent except the `batchnorm` option (kept for FineGAN parity):
OneGAN runs three paths per step on small batches, where batch statistics are unstable.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
from keras import ops


def make_norm(kind: str, name: str | None = None) -> keras.layers.Layer:
    """The normalisation named by `kind` (one of config.NORMALIZATIONS), without activation.

    Layer norm over (H, W, C) with a per-channel affine is GroupNormalization(groups=1);
    instance norm is GroupNormalization(groups=-1).
    """
    if kind in ("glu_layernorm", "layernorm"):
        return keras.layers.GroupNormalization(groups=1, epsilon=1e-5, name=name)
    if kind in ("glu_instancenorm", "instancenorm"):
        return keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, name=name)
    if kind == "batchnorm":
        return keras.layers.BatchNormalization(name=name)
    raise ValueError(f"unknown normalization {kind!r}")


@keras.saving.register_keras_serializable("onegan")
class NormGLU(keras.layers.Layer):
    """Normalisation fused with a GLU: [.., 2C] -> [.., C].

    `glu_*` (the paper's GLU-LNorm): GLU(Norm(x_L), x_R) -- the gate x_R is not normalised,
    because it acts as a mask on x_L. `layernorm`/`instancenorm`/`batchnorm`: GLU(Norm(x)),
    the FineGAN order, for the Table 3a ablation.
    """

    def __init__(self, norm: str = "glu_layernorm", **kwargs):
        super().__init__(**kwargs)
        self.norm_kind = norm
        self.norm = make_norm(norm, name="norm")

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels % 2:
            raise ValueError(f"NormGLU needs an even channel count, got {channels}")
        norm_shape = list(input_shape)
        if self.norm_kind.startswith("glu_"):
            norm_shape[-1] = channels // 2
        self.norm.build(tuple(norm_shape))

    def call(self, x, training=None):
        left, right = ops.split(x, 2, axis=-1)
        if self.norm_kind.startswith("glu_"):
            return self.norm(left, training=training) * ops.sigmoid(right)
        left, right = ops.split(self.norm(x, training=training), 2, axis=-1)
        return left * ops.sigmoid(right)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // 2)

    def get_config(self):
        return {**super().get_config(), "norm": self.norm_kind}


def _conv(filters: int, kernel: int = 3, name: str | None = None, **kwargs):
    return keras.layers.Conv2D(filters, kernel, padding="same", name=name, **kwargs)


@keras.saving.register_keras_serializable("onegan")
class ConvGLU(keras.layers.Layer):
    """conv3x3 to 2*filters -> NormGLU -> filters channels (optionally 2x upsampling first).

    `layer(x, code=c)` is FineGAN's joint conv: the conv of x with the code c [B, d] tiled over
    it as d more channels, with the same weights (kernel [3, 3, C + d, 2*filters]), computed
    without the tiled channels: each kernel tap of the code part adds code @ W_tap wherever the
    tap falls inside the image (the zero padding of "same" drops it at the borders). Exact; at
    64 px (8 feature channels) with a 32-dim code the conv reads a fifth of the channels.
    """

    def __init__(self, filters: int, norm: str = "glu_layernorm", upsample: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.norm_kind, self.upsample = filters, norm, upsample
        self.conv = _conv(2 * filters, use_bias=False, name="conv")
        self.glu = NormGLU(norm, name="glu")

    def build(self, x_shape, code_shape=None):
        shape = list(x_shape)
        if self.upsample:
            shape[1:3] = [None if s is None else 2 * s for s in shape[1:3]]
        if code_shape is not None:
            shape[-1] += code_shape[-1]
        self.conv.build(tuple(shape))
        self.glu.build((*shape[:-1], 2 * self.filters))

    def call(self, x, code=None, training=None):
        if self.upsample:
            x = ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)
        if code is None:
            return self.glu(self.conv(x), training=training)
        return self.glu(self._joint_conv(x, ops.cast(code, x.dtype)), training=training)

    def _joint_conv(self, x, code):
        """conv(concatenate([x, tile_code(code)])) for the "same" padded, unit-stride conv."""
        height, width, channels = x.shape[1], x.shape[2], x.shape[3]
        kernel = ops.cast(self.conv.kernel, x.dtype)  # [k, k, channels + d, out]
        size, out = kernel.shape[0], kernel.shape[-1]
        features = ops.conv(x, kernel[:, :, :channels], padding="same")
        # [k, k, d, out] -> [d, k*k*out]: every tap's code weights side by side.
        code_kernel = ops.reshape(ops.transpose(kernel[:, :, channels:], (2, 0, 1, 3)),
                                  (-1, size * size * out))
        per_tap = ops.reshape(ops.matmul(code, code_kernel), (-1, size * size, out))
        taps = ops.cast(inside_taps(height, width, size), x.dtype)  # [H*W, k*k]
        tiled = ops.reshape(ops.matmul(taps, per_tap), (-1, height, width, out))
        return features + tiled

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "norm": self.norm_kind,
                "upsample": self.upsample}


@functools.cache
def inside_taps(height: int, width: int, size: int):
    """[H*W, size*size] numpy 0/1: whether tap (i, j) of a "same" padded size x size conv
    (odd size) reads a pixel inside the H x W image at each output pixel (row-major both)."""
    pad = (size - 1) // 2
    rows = np.arange(height)[:, None] + np.arange(size)[None, :] - pad  # [H, k]
    cols = np.arange(width)[:, None] + np.arange(size)[None, :] - pad  # [W, k]
    row_in = (rows >= 0) & (rows < height)
    col_in = (cols >= 0) & (cols < width)
    inside = row_in[:, None, :, None] & col_in[None, :, None, :]  # [H, W, k, k]
    taps = inside.reshape(height * width, size * size).astype(np.float32)
    taps.flags.writeable = False  # cached: one array per (height, width, size)
    return taps


@keras.saving.register_keras_serializable("onegan")
class ResBlock(keras.layers.Layer):
    """FineGAN residual block: x + Norm(conv(ConvGLU(x)))."""

    def __init__(self, norm: str = "glu_layernorm", **kwargs):
        super().__init__(**kwargs)
        self.norm_kind = norm
        self.inner = None

    def build(self, input_shape):
        channels = input_shape[-1]
        self.inner = ConvGLU(channels, self.norm_kind, name="conv_glu")
        self.conv = _conv(channels, use_bias=False, name="conv")
        self.norm = make_norm(self.norm_kind, name="norm")
        self.inner.build(input_shape)
        self.conv.build(input_shape)
        self.norm.build(input_shape)

    def call(self, x, training=None):
        y = self.conv(self.inner(x, training=training))
        return x + self.norm(y, training=training)

    def get_config(self):
        return {**super().get_config(), "norm": self.norm_kind}


@keras.saving.register_keras_serializable("onegan")
class CodeEmbedding(keras.layers.Layer):
    """V_bg / V_p / V_c (Eq. 2): one-hot [B, N] -> code vector [B, d] (= e @ V).

    Taking (soft or straight-through) one-hots rather than ids lets gradients reach the
    encoders' logits when the predicted class of a real image selects its embedding.
    """

    def __init__(self, num_codes: int, code_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.num_codes, self.code_dim = num_codes, code_dim

    def build(self, input_shape=None):
        self.table = self.add_weight(
            shape=(self.num_codes, self.code_dim), name="table",
            initializer=keras.initializers.RandomNormal(stddev=1.0))

    def call(self, one_hot):
        return ops.matmul(ops.cast(one_hot, self.table.dtype), self.table)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.code_dim)

    def get_config(self):
        return {**super().get_config(), "num_codes": self.num_codes, "code_dim": self.code_dim}


@keras.saving.register_keras_serializable("onegan")
class Mixup(keras.layers.Layer):
    """Eq. 9: a * (1 - beta) + b * beta with one beta per example ([B] or scalar).

    beta = 0 passes the generation-path tensor `a`; beta = 1 passes the encoder/bypass tensor `b`.
    """

    def call(self, a, b, beta):
        beta = ops.cast(beta, a.dtype)
        beta = ops.reshape(beta, (-1,) + (1,) * (len(a.shape) - 1)) if len(beta.shape) else beta
        return a * (1.0 - beta) + b * beta
