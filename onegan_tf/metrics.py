"""Segmentation and clustering metrics (paper Sec. 5, DESIGN section 7). NumPy in, floats out.

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
