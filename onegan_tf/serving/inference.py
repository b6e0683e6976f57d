"""The five jobs of a trained OneGAN, on its EMA `AutoEncoder` with fixed betas (docs/design.md).

Images are float32 [B, H, W, 3] in [-1, 1] at the model's resolution. At inference the
reconstruction path uses the encoders' means (no sampling) and betas 1, i.e. the encoder
vectors and the bypasses; with the no-bypass ablation the pre-images are used instead
(`inference_betas` is the one place that decides).

Every function checks its inputs (`check_images`, `check_child_ids`): a wrong dtype, shape,
value range, empty batch or child id is a ValueError naming the argument where the value is
known (eager calls), and an in-graph assertion with the same text otherwise (an
InvalidArgumentError from a SavedModel signature, also in TF Serving).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import ops

from onegan_tf.nets.autoencoder import (
    AutoEncoder,
    ablate_betas,
    parent_of,
    tree_parent_probabilities,
)
from onegan_tf.nets.generators import compose

# Resampled images may overshoot [-1, 1] a little; 8-bit values (0..255) are far outside.
IMAGE_RANGE_TOLERANCE = 1e-2


def _dtype(value) -> tf.DType:
    dtype = value.dtype if hasattr(value, "dtype") else np.asarray(value).dtype
    return tf.as_dtype(dtype)


def _after(checks, tensor):
    """tensor, computed only once the assertion ops `checks` have passed."""
    with tf.control_dependencies(checks):
        return tf.identity(tensor)


def check_images(images, image_size: int, name: str = "images"):
    """images -> float32 tensor [B, S, S, 3] with B >= 1 and values in [-1, 1], or an error
    naming `name` and the expected shape (see the module docstring)."""
    expected = f"float32 [B, {image_size}, {image_size}, 3] in [-1, 1]"
    hint = "scale 8-bit images with x / 127.5 - 1, or use the *_bytes signatures"
    dtype = _dtype(images)
    if not dtype.is_floating:
        raise ValueError(f"{name}: expected {expected}, got {dtype.name} values; {hint}")
    images = tf.cast(images, tf.float32)
    shape = images.shape
    if shape.rank is not None and (
            shape.rank != 4 or not shape[1:].is_compatible_with([image_size, image_size, 3])):
        raise ValueError(f"{name}: expected {expected}, got shape {shape.as_list()}")
    if shape.rank is not None and shape[0] == 0:
        raise ValueError(f"{name}: empty batch; expected {expected} with B >= 1")
    value = tf.get_static_value(images)
    limit = 1.0 + IMAGE_RANGE_TOLERANCE
    if value is not None:
        if not np.abs(value).max() <= limit:  # also NaN
            raise ValueError(f"{name}: expected float values in [-1, 1] (got min "
                             f"{value.min():g}, max {value.max():g}); {hint}")
        return images
    # Loaded SavedModel functions do not check their input shapes: ensure_shape does.
    images = tf.ensure_shape(images, [None, image_size, image_size, 3],
                             name=f"{name}_must_be_Bx{image_size}x{image_size}x3")
    return _after([
        tf.debugging.assert_positive(
            tf.shape(images)[0], message=f"{name}: empty batch; expected {expected} with B >= 1"),
        tf.debugging.assert_less_equal(
            tf.reduce_max(tf.abs(images)), limit,
            message=f"{name}: expected float values in [-1, 1] (x below: the largest |value|); "
                    f"{hint}"),
    ], images)


def check_child_ids(child_id, num_children: int, name: str = "child_id",
                    batch: bool = False):
    """child ids (scalar or [B], any integer dtype) -> int32 tensor, or an error naming `name`
    and the allowed range. batch=True: the ids define the batch, which must not be empty."""
    allowed = f"ids in [0, {num_children - 1}] (the model has {num_children} children)"
    dtype = _dtype(child_id)
    if not dtype.is_integer:
        raise ValueError(f"{name}: expected integer {allowed}, got {dtype.name} values")
    child_id = tf.convert_to_tensor(child_id)
    value = tf.get_static_value(child_id)
    if value is not None:
        value = np.asarray(value)
        bad = value[(value < 0) | (value >= num_children)]
        if bad.size:
            raise ValueError(f"{name}: expected {allowed}, got {', '.join(map(str, bad[:5]))}")
        if batch and value.size == 0:
            raise ValueError(f"{name}: empty batch; expected [B] {allowed} with B >= 1")
        return tf.cast(child_id, tf.int32)
    checks = [
        tf.debugging.assert_non_negative(child_id, message=f"{name}: expected {allowed}"),
        tf.debugging.assert_less(child_id, tf.cast(num_children, child_id.dtype),
                                 message=f"{name}: expected {allowed}")]
    if batch:
        checks.append(tf.debugging.assert_positive(
            tf.size(child_id), message=f"{name}: empty batch; expected [B] {allowed}, B >= 1"))
    return _after(checks, tf.cast(child_id, tf.int32))


def inference_betas(autoencoder: AutoEncoder, batch, translate: bool = False):
    """Fixed Eq. 9 betas: 1 everywhere (encoder means and bypasses), then the ablations.
    translate=True takes v_c from the child embedding (beta2 = 0), so that a swapped child
    code changes the style (Fig. 6)."""
    ones = ops.ones((batch,))
    betas = ablate_betas(autoencoder.config, {k: ones for k in ("beta1", "beta2", "beta3",
                                                                "beta4")})
    if translate:
        betas["beta2"] = ops.zeros((batch,))
    return betas


def reconstruct(autoencoder: AutoEncoder, images):
    """-> dict(image, foreground, mask, background) of the reconstruction path (Fig. 4)."""
    images = check_images(images, autoencoder.config.image_size)
    out = autoencoder.reconstruct(images, inference_betas(autoencoder, tf.shape(images)[0]))
    return {k: out[k] for k in ("image", "foreground", "mask", "background")}


def segment(autoencoder: AutoEncoder, images):
    """-> soft foreground mask [B, H, W, 1] in [0, 1]."""
    return reconstruct(autoencoder, images)["mask"]


def remove_object(autoencoder: AutoEncoder, images):
    """-> the completed background without the object [B, H, W, 3] in [-1, 1]."""
    return reconstruct(autoencoder, images)["background"]


def cluster(autoencoder: AutoEncoder, images):
    """-> dict(parent_probs [B, N_P], child_probs [B, N_C], parent [B], child [B] int32,
    shape_parent_probs [B, N_P]).

    The child is E_c's cluster. The parent is the child's parent in the code tree (Eq. 1 ties
    e_p to e_c: child c belongs to parent floor(c N_P / N_C)), and parent_probs sums the child
    probabilities over each parent's children, so the two levels always agree. E_p's own parent
    head is returned as shape_parent_probs: trained only through e_p, it collapsed to one parent
    for almost all real images during real reconstruction in the demo (see docs/results.md), so
    it is not used for the assignment."""
    images = check_images(images, autoencoder.config.image_size)
    return _clusters(autoencoder, autoencoder.encode(images))


def _clusters(autoencoder: AutoEncoder, encoded):
    """cluster() from the encoder outputs."""
    cfg = autoencoder.config
    child_probs = ops.softmax(encoded["child_logits"], axis=-1)
    # tf.argmax converts to TFLite (Keras' argmax adds a BitwiseAnd op).
    child = tf.argmax(child_probs, axis=-1, output_type=tf.int32)
    return {"parent_probs": tree_parent_probabilities(child_probs, cfg.num_parents),
            "child_probs": child_probs,
            "parent": tf.cast(parent_of(child, cfg.num_children, cfg.num_parents), tf.int32),
            "child": child,
            "shape_parent_probs": ops.softmax(encoded["parent_logits"], axis=-1)}


def analyse(autoencoder: AutoEncoder, images):
    """reconstruct() and cluster() together, running the encoders once:
    dict(image, foreground, mask, background, parent_probs, child_probs, parent, child,
    shape_parent_probs)."""
    images = check_images(images, autoencoder.config.image_size)
    encoded = autoencoder.encode(images)
    out = autoencoder.reconstruct(images, inference_betas(autoencoder, tf.shape(images)[0]),
                                  encoded=encoded)
    return {**{k: out[k] for k in ("image", "foreground", "mask", "background")},
            **_clusters(autoencoder, encoded)}


def translate(autoencoder: AutoEncoder, images, child_id):
    """Reconstruction with the child code swapped for `child_id` (scalar or [B]) (Fig. 6)."""
    images = check_images(images, autoencoder.config.image_size)
    child = check_child_ids(child_id, autoencoder.config.num_children)
    if child.shape.rank is not None and (child.shape.rank > 1 or child.shape.rank == 1
                                         and not child.shape.is_compatible_with(images.shape[:1])):
        raise ValueError(f"child_id: expected a scalar or [B] ids with B = "
                         f"{images.shape[0]} (the images), got shape {child.shape.as_list()}")
    batch = tf.shape(images)[0]
    child = tf.broadcast_to(child, [batch])
    out = autoencoder.reconstruct(
        images, inference_betas(autoencoder, batch, translate=True),
        child_one_hot=ops.one_hot(child, autoencoder.config.num_children))
    return out["image"]


def generate(autoencoder: AutoEncoder, child_id, z=None, seed: int = 0):
    """Generation path (Fig. 3/5): child ids [B] (+ z [B, d_z], else N(0, I) from `seed`)
    -> dict(image, foreground, mask, background)."""
    z_dim = autoencoder.config.z_dim
    child = tf.reshape(check_child_ids(child_id, autoencoder.config.num_children, batch=True),
                       [-1])
    if z is None:
        z = tf.random.stateless_normal([tf.shape(child)[0], z_dim], seed=[seed, 0])
    z = tf.cast(z, tf.float32)
    if z.shape.rank is not None and (z.shape.rank != 2 or not z.shape.is_compatible_with(
            [child.shape[0], z_dim])):
        raise ValueError(f"z: expected float32 [B, {z_dim}] with B = {child.shape[0]} (the "
                         f"child ids), got shape {z.shape.as_list()}")
    out = autoencoder.generate(child, z)
    return {k: out[k] for k in ("image", "foreground", "mask", "background")}


def mix(autoencoder: AutoEncoder, background_images, foreground_images=None, child_id=None,
        z=None, seed: int = 0):
    """The background of `background_images` with the object of `foreground_images`, or with
    an object generated for cluster `child_id` (exactly one of the two)."""
    if (foreground_images is None) == (child_id is None):
        raise ValueError("mix: give exactly one of foreground_images and child_id")
    if child_id is not None:  # fail before the background is computed
        child_id = check_child_ids(child_id, autoencoder.config.num_children)
    background = remove_object(autoencoder, background_images)
    if foreground_images is not None:
        source = reconstruct(autoencoder, foreground_images)
    else:
        batch = tf.shape(background)[0]
        source = generate(autoencoder, tf.broadcast_to(tf.cast(child_id, tf.int32), [batch]),
                          z, seed)
    return compose(background, source["foreground"], source["mask"])
