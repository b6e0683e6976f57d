"""Segmentation, clustering and generation metrics (paper Sec. 5). NumPy in, floats out.

Segmentation: per-image IoU and DICE of binarised masks (threshold 0.5), averaged over images.
Clustering: ACC with the best one-to-one matching of clusters to classes (Hungarian, scipy
`linear_sum_assignment`) and NMI with the arithmetic-mean normalisation.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def _binary(masks, threshold: float = 0.5) -> np.ndarray:
    masks = np.asarray(masks, dtype=np.float32)
    return masks.reshape(masks.shape[0], -1) > threshold


def iou(pred_masks, true_masks, threshold: float = 0.5) -> float:
    """Mean per-image intersection over union; an image where both masks are empty scores 1."""
    pred, true = _binary(pred_masks, threshold), _binary(true_masks, threshold)
    inter = np.logical_and(pred, true).sum(1)
    union = np.logical_or(pred, true).sum(1)
    return float(np.mean(np.where(union > 0, inter / np.maximum(union, 1), 1.0)))


def dice(pred_masks, true_masks, threshold: float = 0.5) -> float:
    """Mean per-image DICE = 2|P∩T| / (|P| + |T|); both empty scores 1."""
    pred, true = _binary(pred_masks, threshold), _binary(true_masks, threshold)
    inter = np.logical_and(pred, true).sum(1)
    total = pred.sum(1) + true.sum(1)
    return float(np.mean(np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)))


def pixel_precision_recall(pred_masks, true_masks, threshold: float = 0.5) -> tuple[float, float]:
    """(precision, recall) of binarised masks over all pixels of all images: the share of
    predicted foreground that is object, and of object that is predicted. Tells a mask that is
    too large (low precision) from one that is too small or fragmented (low recall), which IoU
    alone does not. An empty prediction has precision 1 (nothing claimed wrongly)."""
    pred, true = _binary(pred_masks, threshold), _binary(true_masks, threshold)
    if pred.shape != true.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {true.shape}")
    inter = float(np.logical_and(pred, true).sum())
    claimed, present = float(pred.sum()), float(true.sum())
    return (inter / claimed if claimed else 1.0), (inter / present if present else 1.0)


def _contingency(labels, clusters) -> np.ndarray:
    labels, clusters = np.asarray(labels).ravel(), np.asarray(clusters).ravel()
    if labels.shape != clusters.shape:
        raise ValueError(f"labels {labels.shape} and clusters {clusters.shape} differ in size")
    _, label_idx = np.unique(labels, return_inverse=True)
    _, cluster_idx = np.unique(clusters, return_inverse=True)
    table = np.zeros((label_idx.max() + 1, cluster_idx.max() + 1), np.int64)
    np.add.at(table, (label_idx, cluster_idx), 1)
    return table


def clustering_accuracy(labels, clusters) -> float:
    """Best accuracy over one-to-one cluster->class assignments (Hungarian matching)."""
    table = _contingency(labels, clusters)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / table.sum())


def normalized_mutual_information(labels, clusters) -> float:
    """NMI = I(L; C) / ((H(L) + H(C)) / 2); 1 for identical partitions (up to renaming)."""
    table = _contingency(labels, clusters).astype(np.float64)
    n = table.sum()
    p_joint = table / n
    p_label, p_cluster = p_joint.sum(1), p_joint.sum(0)
    nz = p_joint > 0
    mutual = np.sum(p_joint[nz] * np.log(p_joint[nz] / np.outer(p_label, p_cluster)[nz]))
    entropy = lambda p: -np.sum(p[p > 0] * np.log(p[p > 0]))  # noqa: E731
    denominator = (entropy(p_label) + entropy(p_cluster)) / 2
    if denominator <= 0:  # both partitions have a single block
        return 1.0
    return float(max(0.0, mutual) / denominator)


def centred_ellipse_masks(count: int, size: int, fraction: float = 0.5) -> np.ndarray:
    """A trivial baseline: an axis-aligned ellipse centred in the image, with half-axes
    `fraction` of the half-size. [count, size, size, 1] in {0, 1}."""
    grid = (np.arange(size) + 0.5) / size * 2 - 1
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    inside = (xx / fraction) ** 2 + (yy / fraction) ** 2 <= 1.0
    return np.broadcast_to(inside[None, :, :, None], (count, size, size, 1)).astype(np.float32)


# --- Generation metrics ----------------------------------------------------------------------
#
# FID (Heusel et al. 2017) and IS (Salimans et al. 2016) and their class-conditional versions
# (Benny, Galanti, Benaim & Wolf 2020, "Evaluation metrics for conditional image
# generation"). Features and class probabilities come from an evaluator network
# (`onegan_tf.evaluator`). With a generator conditioned on y in {1..N} and the evaluator's
# class posterior p(c|x):
#
#   p_y(c) = E_{x ~ G(.|y)} p(c|x)          (the class-conditional mean prediction)
#   p(c)   = E_y p_y(c)                      (the marginal prediction)
#   IS     = exp E_x KL(p(c|x) || p(c))
#   BCIS   = exp E_y KL(p_y || p)            between-class: high when the conditions differ
#   WCIS   = exp E_y E_{x~G(.|y)} KL(p(c|x) || p_y)   within-class: how far each image's
#            class posterior is from its condition's mean posterior, i.e. how mixed the classes
#            of one condition are. 1 (its best value) when every image of a condition gets the
#            same posterior (a pure condition); it does NOT measure the diversity of the images
#            within a condition: a generator that ignores z scores the best WCIS, 1.
#   IS     = BCIS * WCIS                     (exact; the product relation of the paper)
#
# With Gaussians fitted to evaluator features of real images of class y (mean mu_y, covariance
# S_y) and of generated images of the matching condition, and d(.,.) the Frechet distance
#   d((m1, S1), (m2, S2)) = |m1 - m2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)),
#
#   FID    = d(all real, all generated)
#   BCFID  = d of the Gaussians fitted to the class means {mu_y} (weighted by class frequency)
#   WCFID  = E_y d(real class y, generated class y)
#   FID   <= BCFID + WCFID                   (the upper-bound relation of the paper; it follows
#            from the law of total covariance and the superadditivity of Tr (S1 S2)^(1/2))
#
# "CIS" in OneGAN's Table 1 is BCIS and "CFID" is WCFID; all six are reported. Covariances use
# the 1/n (maximum-likelihood) normalisation so that the total-covariance identity, and
# with it the bound, hold exactly for the sample statistics.


def gaussian_statistics(features, unbiased: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] of features [N, D], in float64: 1/n normalisation, or
    1/(n-1) with `unbiased` (the reference FID implementations' np.cov)."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need features [N >= 2, D], got shape {features.shape}")
    mean = features.mean(0)
    centred = features - mean
    return mean, centred.T @ centred / (len(features) - 1 if unbiased else len(features))


def _trace_sqrt_product(cov1, cov2) -> float:
    """Tr (S1 S2)^(1/2) for symmetric PSD S1, S2, as Tr (S1^(1/2) S2 S1^(1/2))^(1/2): the
    eigenvalues of a symmetric PSD matrix, so no complex square roots or failing sqrtm."""
    values, vectors = np.linalg.eigh(cov1)
    root = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    inner = np.linalg.eigvalsh(root @ cov2 @ root)
    return float(np.sum(np.sqrt(np.clip(inner, 0, None))))


def frechet_distance(mean1, cov1, mean2, cov2) -> float:
    """|m1 - m2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)); 0 for identical statistics."""
    mean1, mean2 = np.asarray(mean1, np.float64), np.asarray(mean2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    if mean1.shape != mean2.shape or cov1.shape != cov2.shape:
        raise ValueError(f"statistics differ in shape: {mean1.shape} vs {mean2.shape}")
    distance = (np.sum((mean1 - mean2) ** 2) + np.trace(cov1) + np.trace(cov2)
                - 2 * _trace_sqrt_product(cov1, cov2))
    return float(max(distance, 0.0))


def fid(real_features, generated_features, unbiased: bool = False) -> float:
    """Frechet distance of Gaussians fitted to two feature sets [N, D] (covariances 1/n, or
    1/(n-1) with `unbiased`, as the reference implementation computes FID)."""
    return frechet_distance(*gaussian_statistics(real_features, unbiased),
                            *gaussian_statistics(generated_features, unbiased))


def quantised(images) -> np.ndarray:
    """Images in [-1, 1] as the 8-bit PNGs a reference FID tool would read, back in [-1, 1]:
    round((x + 1) * 127.5) / 127.5 - 1."""
    levels = np.round((np.clip(np.asarray(images, np.float32), -1, 1) + 1) * 127.5)
    return (levels / 127.5 - 1).astype(np.float32)


def _class_statistics(features, labels, classes):
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels).ravel()
    out = {}
    for y in classes:
        members = features[labels == y]
        if len(members) < 2:
            raise ValueError(f"class {y} has {len(members)} examples; need at least 2")
        out[y] = (len(members) / len(features),) + gaussian_statistics(members)
    return out


def conditional_fid(real_features, real_labels, generated_features, generated_labels) -> dict:
    """BCFID and WCFID over the classes both sets share with >= 2 images each (the paper's
    CFID is WCFID).

    real_labels [N] are the true classes; generated_labels [M] the condition each image was
    generated for, already mapped onto the real classes."""
    real_labels = np.asarray(real_labels).ravel()
    generated_labels = np.asarray(generated_labels).ravel()
    shared = [y for y in sorted(set(real_labels.tolist()) & set(generated_labels.tolist()))
              if np.sum(real_labels == y) >= 2 and np.sum(generated_labels == y) >= 2]
    if len(shared) < 2:
        raise ValueError(f"conditional FID needs >= 2 classes with >= 2 real and >= 2 "
                         f"generated images each, got {len(shared)}")
    real = _class_statistics(real_features, real_labels, shared)
    generated = _class_statistics(generated_features, generated_labels, shared)

    def between(stats):
        weights = np.array([stats[y][0] for y in shared])
        weights = weights / weights.sum()
        means = np.stack([stats[y][1] for y in shared])
        centre = weights @ means
        centred = means - centre
        return centre, (centred * weights[:, None]).T @ centred

    real_weights = np.array([real[y][0] for y in shared])
    within = [frechet_distance(*real[y][1:], *generated[y][1:]) for y in shared]
    return {"bcfid": frechet_distance(*between(real), *between(generated)),
            "wcfid": float(np.dot(real_weights / real_weights.sum(), within)),
            "classes": len(shared)}


def _kl_rows(p, q) -> np.ndarray:
    """KL(p_i || q_i) for each row, with 0 log 0 = 0."""
    p = np.asarray(p, np.float64)
    q = np.broadcast_to(np.asarray(q, np.float64), p.shape)
    ratio = np.where(p > 0, p / np.maximum(q, 1e-300), 1.0)
    return np.sum(np.where(p > 0, p * np.log(ratio), 0.0), axis=-1)


def _check_probabilities(probs) -> np.ndarray:
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or not np.allclose(probs.sum(1), 1.0, atol=1e-3) or probs.min() < 0:
        raise ValueError(f"need class probabilities [N, C] with rows summing to 1, got "
                         f"shape {probs.shape}")
    return probs / probs.sum(1, keepdims=True)


def inception_score(probs) -> float:
    """exp E_x KL(p(c|x) || p(c)) for evaluator probabilities [N, C]; 1 when all rows agree."""
    probs = _check_probabilities(probs)
    return float(np.exp(np.mean(_kl_rows(probs, probs.mean(0)))))


def conditional_inception_score(probs, conditions) -> dict:
    """{"bcis", "wcis"} of probabilities [N, C] for images generated under conditions [N].

    BCIS (the paper's CIS, higher is better) is high when different conditions get different
    classes. WCIS measures how pure each condition's class is: exp of the mean over conditions
    of the mean KL of an image's posterior from its condition's mean posterior; 1 is its best
    value (every image of a condition classified alike), up to the number of classes. WCIS
    does not measure diversity within a condition (see `within_code_diversity`).
    Conditions are weighted by their frequency, so that p(c) is the plain mean prediction and
    IS = BCIS * WCIS holds exactly."""
    probs = _check_probabilities(probs)
    conditions = np.asarray(conditions).ravel()
    if len(conditions) != len(probs):
        raise ValueError(f"{len(conditions)} conditions for {len(probs)} predictions")
    marginal = probs.mean(0)
    between, within = 0.0, 0.0
    for y in np.unique(conditions):
        members = probs[conditions == y]
        weight = len(members) / len(probs)
        class_mean = members.mean(0)
        between += weight * float(_kl_rows(class_mean[None], marginal)[0])
        within += weight * float(np.mean(_kl_rows(members, class_mean)))
    return {"bcis": float(np.exp(between)), "wcis": float(np.exp(within))}


def match_conditions(conditions, predicted_classes) -> dict:
    """Maps each generator condition to a real class by Hungarian matching on how often the
    evaluator assigns the condition's images to each class (unsupervised codes carry no class
    names). Returns {condition: class}; unmatched conditions are left out."""
    conditions = np.asarray(conditions).ravel()
    predicted_classes = np.asarray(predicted_classes).ravel()
    codes, code_idx = np.unique(conditions, return_inverse=True)
    classes, class_idx = np.unique(predicted_classes, return_inverse=True)
    table = np.zeros((len(codes), len(classes)), np.int64)
    np.add.at(table, (code_idx, class_idx), 1)
    rows, cols = linear_sum_assignment(-table)
    return {int(codes[r]): int(classes[c]) for r, c in zip(rows, cols)}


def masked_l1_psnr(pred, target, region) -> tuple[float, float]:
    """Mean absolute error and PSNR inside `region` ([N, H, W, 1] > 0.5), per image then
    averaged, on images [N, H, W, 3] given in [-1, 1] and measured in [0, 1]. Images with an
    empty region are skipped."""
    diff = (np.asarray(pred, np.float64) - np.asarray(target, np.float64)) / 2
    inside = np.broadcast_to(np.asarray(region) > 0.5, diff.shape)
    count = inside.sum((1, 2, 3))
    if not count.any():
        raise ValueError("no image has a non-empty region")
    diff, count = np.where(inside, diff, 0.0)[count > 0], count[count > 0]
    l1 = np.abs(diff).sum((1, 2, 3)) / count
    mse = np.square(diff).sum((1, 2, 3)) / count
    return float(np.mean(l1)), float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-10))))


def smooth_fill(images, region) -> np.ndarray:
    """Trivial inpainting with a smooth surface: per image and channel, the least-squares
    quadratic in (x, y) through the pixels outside `region` ([N, H, W, 1] > 0.5) replaces the
    pixels inside it. images [N, H, W, C]; -> the filled images (float64)."""
    images = np.asarray(images, np.float64)
    _, height, width, channels = images.shape
    y, x = np.mgrid[0:height, 0:width] / max(height - 1, 1) * 2 - 1
    basis = np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], -1).reshape(-1, 6)
    outside = (np.asarray(region) <= 0.5).reshape(len(images), -1, 1).astype(np.float64)
    gram = np.einsum("pi,npo,pj->nij", basis, outside, basis)  # [N, 6, 6]
    moments = np.einsum("pi,npo,npc->nic", basis, outside, images.reshape(len(images), -1,
                                                                           channels))
    gram += 1e-6 * np.eye(6)  # an image with (almost) no visible pixels stays solvable
    surface = np.einsum("pi,nic->npc", basis, np.linalg.solve(gram, moments))
    return np.where(np.asarray(region) > 0.5, surface.reshape(images.shape), images)


def kmeans_labels(features, k: int, seed: int = 0, iterations: int = 50) -> np.ndarray:
    """k-means (k-means++ start, Lloyd iterations) of features [N, D] -> cluster ids [N]; the
    trivial clustering baseline on raw pixels."""
    from scipy.cluster.vq import kmeans2
    features = np.asarray(features, np.float64).reshape(len(features), -1)
    _, labels = kmeans2(features, k, iter=iterations, minit="++", seed=seed)
    return labels


# --- Generated images: diversity within a code, shape families, mask area ------------------

def mean_pairwise_distance(features) -> float:
    """The mean Euclidean distance over all pairs of distinct rows of features [N >= 2, D]."""
    from scipy.spatial.distance import pdist
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need features [N >= 2, D], got shape {features.shape}")
    return float(pdist(features).mean())


def within_group_distance(features, groups) -> tuple[float, int]:
    """(mean over groups of each group's mean pairwise feature distance, groups used) for
    features [N, D] and group ids [N]. Groups with fewer than 2 members are left out; raises
    ValueError when none has 2."""
    features = np.asarray(features, np.float64)
    groups = np.asarray(groups).ravel()
    if len(groups) != len(features):
        raise ValueError(f"{len(groups)} group ids for {len(features)} feature rows")
    distances = [mean_pairwise_distance(features[groups == g]) for g in np.unique(groups)
                 if np.sum(groups == g) >= 2]
    if not distances:
        raise ValueError("no group has 2 or more members")
    return float(np.mean(distances)), len(distances)


def within_code_diversity(generated_features, codes, real_features, real_classes=None) -> dict:
    """Diversity of the images generated for one code, relative to real data.

    generated: the mean pairwise distance between features of images generated for the same
    code (different z), averaged over codes; real: the same over real images grouped by their
    true class (all real images as one group when real_classes is None). Returns
    {"diversity": generated / real, "generated", "real", "codes", "real_groups"}: diversity is
    1 when a code varies as much as a real class does, 0 when z is ignored."""
    generated, codes_used = within_group_distance(generated_features, codes)
    if real_classes is None:
        real_classes = np.zeros(len(real_features), np.int64)
    real, groups_used = within_group_distance(real_features, real_classes)
    if real <= 0:
        raise ValueError("the real images' features do not vary; diversity is undefined")
    return {"diversity": generated / real, "generated": generated, "real": real,
            "codes": codes_used, "real_groups": groups_used}


def code_parents(children, num_children: int, num_parents: int) -> np.ndarray:
    """The parent of each child code in the code tree: child * N_P // N_C (int64 [N])."""
    return np.asarray(children, np.int64).ravel() * num_parents // num_children


def shape_accuracy(children, predicted_families, num_children: int, num_parents: int) -> float:
    """Accuracy of the shape family a classifier sees in each generated image against the
    parent of the code it was generated for, with code parents matched one-to-one to families
    by Hungarian matching (as `clustering_accuracy`). 1 when each parent draws its own family;
    1 / N_P when every image (balanced codes) shows the same family."""
    return clustering_accuracy(code_parents(children, num_children, num_parents),
                               predicted_families)


def mask_area(masks) -> tuple[float, float]:
    """(mean, std) over images of the per-image mean of masks [N, H, W, 1] in [0, 1]: the
    fraction of the image that is foreground."""
    masks = np.asarray(masks, np.float64)
    per_image = masks.reshape(len(masks), -1).mean(1)
    return float(per_image.mean()), float(per_image.std())


def mask_area_comparison(generated_masks, real_masks=None) -> dict:
    """{"generated_mean", "generated_std"} of generated masks' areas (`mask_area`), plus
    {"real_mean", "real_std"} of the true masks when given."""
    out = dict(zip(("generated_mean", "generated_std"), mask_area(generated_masks)))
    if real_masks is not None:
        out.update(zip(("real_mean", "real_std"), mask_area(real_masks)))
    return out
