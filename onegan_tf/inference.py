"""The five jobs of a trained OneGAN, on its EMA `AutoEncoder` with fixed betas (DESIGN section 4).

Images are float32 [B, H, W, 3] in [-1, 1] at the model's resolution. At inference the
reconstruction path uses the encoders' means (no sampling) and betas 1, i.e. the encoder
vectors and the bypasses; with the no-bypass ablation the pre-images are used instead
(`inference_betas` is the one place that decides).
"""

from __future__ import annotations

import tensorflow as tf
from keras import ops

from onegan_tf.autoencoder import AutoEncoder, ablate_betas, parent_of
from onegan_tf.generators import compose


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
    images = tf.convert_to_tensor(images, tf.float32)
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
    for almost all real images during real reconstruction in the demo (see README), so it is
    not used for the assignment."""
    return _clusters(autoencoder, autoencoder.encode(tf.convert_to_tensor(images, tf.float32)))


def _clusters(autoencoder: AutoEncoder, encoded):
    """cluster() from the encoder outputs."""
    cfg = autoencoder.config
    child_probs = ops.softmax(encoded["child_logits"], axis=-1)
    tree = tf.one_hot(parent_of(tf.range(cfg.num_children), cfg.num_children, cfg.num_parents),
                      cfg.num_parents)  # [N_C, N_P] membership
    # tf.argmax converts to TFLite (Keras' argmax adds a BitwiseAnd op).
    child = tf.argmax(child_probs, axis=-1, output_type=tf.int32)
    return {"parent_probs": tf.matmul(child_probs, tree), "child_probs": child_probs,
            "parent": tf.cast(parent_of(child, cfg.num_children, cfg.num_parents), tf.int32),
            "child": child,
            "shape_parent_probs": ops.softmax(encoded["parent_logits"], axis=-1)}


def analyse(autoencoder: AutoEncoder, images):
    """reconstruct() and cluster() together, running the encoders once:
    dict(image, foreground, mask, background, parent_probs, child_probs, parent, child,
    shape_parent_probs)."""
    images = tf.convert_to_tensor(images, tf.float32)
    encoded = autoencoder.encode(images)
    out = autoencoder.reconstruct(images, inference_betas(autoencoder, tf.shape(images)[0]),
                                  encoded=encoded)
    return {**{k: out[k] for k in ("image", "foreground", "mask", "background")},
            **_clusters(autoencoder, encoded)}


def translate(autoencoder: AutoEncoder, images, child_id):
    """Reconstruction with the child code swapped for `child_id` (scalar or [B]) (Fig. 6)."""
    images = tf.convert_to_tensor(images, tf.float32)
    batch = tf.shape(images)[0]
    child = tf.broadcast_to(tf.cast(child_id, tf.int32), [batch])
    out = autoencoder.reconstruct(
        images, inference_betas(autoencoder, batch, translate=True),
        child_one_hot=ops.one_hot(child, autoencoder.config.num_children))
    return out["image"]


def generate(autoencoder: AutoEncoder, child_id, z=None, seed: int = 0):
    """Generation path (Fig. 3/5): child ids [B] (+ z [B, d_z], else N(0, I) from `seed`)
    -> dict(image, foreground, mask, background)."""
    child = tf.reshape(tf.cast(child_id, tf.int32), [-1])
    if z is None:
        z = tf.random.stateless_normal([tf.shape(child)[0], autoencoder.config.z_dim],
                                       seed=[seed, 0])
    out = autoencoder.generate(child, tf.cast(z, tf.float32))
    return {k: out[k] for k in ("image", "foreground", "mask", "background")}


def mix(autoencoder: AutoEncoder, background_images, foreground_images=None, child_id=None,
        z=None, seed: int = 0):
    """The background of `background_images` with the object of `foreground_images`, or with
    an object generated for cluster `child_id` (exactly one of the two)."""
    if (foreground_images is None) == (child_id is None):
        raise ValueError("mix: give exactly one of foreground_images and child_id")
    background = remove_object(autoencoder, background_images)
    if foreground_images is not None:
        source = reconstruct(autoencoder, foreground_images)
    else:
        batch = tf.shape(background)[0]
        source = generate(autoencoder, tf.broadcast_to(tf.cast(child_id, tf.int32), [batch]),
                          z, seed)
    return compose(background, source["foreground"], source["mask"])
