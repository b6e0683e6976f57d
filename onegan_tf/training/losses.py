"""Loss terms of Eq. 10-17: pure functions, tensors in, float32 scalars out.

Every function averages over the examples it sees on this replica; the model divides the
weighted sum by the number of replicas (Keras sums gradients across replicas).
"""

from __future__ import annotations

import tensorflow as tf
from keras import ops


def _f32(x):
    return ops.cast(x, "float32")


def discriminator_loss(real_logits, fake_logits):
    """BCE of a discriminator: real -> 1, fake -> 0 (one term of Eq. 10, in logits form)."""
    return ops.mean(ops.softplus(-_f32(real_logits))) + ops.mean(ops.softplus(_f32(fake_logits)))


def generator_loss(fake_logits):
    """Non-saturating generator loss: BCE(fake -> 1) (one term of Eq. 11)."""
    return ops.mean(ops.softplus(-_f32(fake_logits)))


def cross_entropy(logits, labels):
    """Mean sparse cross entropy; logits [B, N], integer labels [B] (Eq. 12)."""
    logits = _f32(logits)
    log_probs = logits - ops.logsumexp(logits, axis=-1, keepdims=True)
    picked = ops.take_along_axis(log_probs, ops.cast(labels, "int32")[:, None], axis=-1)
    return -ops.mean(picked)


def soft_cross_entropy(logits, target_probabilities):
    """Mean cross entropy of logits [B, N] against a target distribution [B, N] (rows sum to
    1). Callers stop gradients on the target."""
    logits = _f32(logits)
    log_probs = logits - ops.logsumexp(logits, axis=-1, keepdims=True)
    return -ops.mean(ops.sum(_f32(target_probabilities) * log_probs, axis=-1))


def mean_squared_error(target, prediction):
    """MSE(target, prediction) (Eq. 13). Callers stop gradients on the target."""
    return ops.mean(ops.square(_f32(target) - _f32(prediction)))


def mean_absolute_error(target, prediction):
    """L1 (Eq. 16), averaged over pixels and channels."""
    return ops.mean(ops.abs(_f32(target) - _f32(prediction)))


def gaussian_kl(mean, log_var, target_mean=None, per_dimension=True):
    """KL(N(mean, diag(exp(log_var))) || N(target_mean, I)) (Eq. 15), averaged over examples.

    per_dimension: averaged over the code's dimensions (1/d of the KL Eq. 15 writes, so that
    large codes do not outweigh the image losses); False: summed over them, as written.
    target_mean = None means 0.
    """
    mean, log_var = _f32(mean), _f32(log_var)
    diff = mean if target_mean is None else mean - _f32(target_mean)
    per_entry = 0.5 * (ops.exp(log_var) + ops.square(diff) - 1.0 - log_var)
    return ops.mean(per_entry) if per_dimension else ops.mean(ops.sum(per_entry, axis=-1))


def code_regularizer(*codes):
    """L_Rv (Eq. 14): mean squared entry of the code vectors, summed over code types.

    Keeps v_bg, v_p, v_c on the unit scale assumed by the N(v, I) targets of Eq. 15.
    """
    return sum(ops.mean(ops.square(_f32(c))) for c in codes)


def mask_regularizer(mask, area_min: float, area_max: float, mean_area_max: float = 1.0):
    """L_RM (Eq. 14): binarisation mean(min(m, 1 - m)) + hinge keeping each mask's mean area
    inside [area_min, area_max] (stops the all-background / all-object solutions).

    Not in the paper: with mean_area_max < 1, a second hinge on the batch's mean area,
    relu(mean area - mean_area_max) (under a distribution strategy, each replica's batch).
    Each mask may still take any area in [area_min, area_max]; the batch as a whole may not be
    larger on average than the data's objects.
    """
    mask = _f32(mask)
    binarize = ops.mean(ops.minimum(mask, 1.0 - mask))
    area = ops.mean(mask, axis=(1, 2, 3))
    hinge = ops.mean(ops.relu(area_min - area) + ops.relu(area - area_max))
    if mean_area_max < 1.0:
        hinge += ops.relu(ops.mean(area) - mean_area_max)
    return binarize + hinge


def mask_boundary_length(mask):
    """Boundary length of each mask in units of the image side, averaged over the batch: its
    anisotropic total variation (`tf.image.total_variation`, the absolute differences between
    neighbouring pixels in both directions), divided by the image height.

    A solid square covering a fraction a of a square image scores 4 sqrt(a) (1.6 at a = 0.17),
    a disc 8 sqrt(a / pi); four streaks 3 px wide and 40 px long on 64 px about 5. A soft
    edge costs what a hard one does (TV of a monotone ramp is its rise), so the term does not
    binarise; it ranks compact objects above streaks, speckle and fringes of the same area.
    """
    mask = _f32(mask)
    return ops.mean(tf.image.total_variation(mask)) / ops.cast(ops.shape(mask)[1], "float32")


EDGE_SHARPNESS = 10.0  # 1 / the image step (mean |channel difference|, [-1, 1]) that is an edge


def edge_aware_boundary_length(mask, images):
    """`mask_boundary_length` with each neighbour difference of the mask weighted by
    exp(-EDGE_SHARPNESS * |image step|), the mean absolute difference of the same two pixels
    over the channels (images in [-1, 1]).

    In a flat image region a mask edge costs what it costs in `mask_boundary_length` (4 sqrt(a)
    for a solid square); across a step of 0.3 between object and background it costs 5% of
    that; across texture of 0.05-0.1 per pixel, 40-60%. So of two masks of one image the term
    prefers the one whose outline runs along the image's edges: it pulls a rounded outline
    onto the object's corners and arms, and does not care how long that outline is."""
    mask, images = _f32(mask), _f32(images)

    def weighted_steps(x_next, x, m_next, m):
        image_step = ops.mean(ops.abs(x_next - x), axis=-1, keepdims=True)
        return ops.sum(ops.abs(m_next - m) * ops.exp(-EDGE_SHARPNESS * image_step),
                       axis=(1, 2, 3))

    length = (weighted_steps(images[:, 1:], images[:, :-1], mask[:, 1:], mask[:, :-1])
              + weighted_steps(images[:, :, 1:], images[:, :, :-1], mask[:, :, 1:],
                               mask[:, :, :-1]))
    return ops.mean(length) / ops.cast(ops.shape(mask)[1], "float32")


def perceptual_loss(features_a, features_b):
    """Squared L2 between hidden discriminator features (Eq. 17), averaged."""
    return ops.mean(ops.square(_f32(features_a) - _f32(features_b)))
