"""Evaluation of a model on held-out images with ground truth.

`quick_metrics` is the cheap periodic evaluation run during training (segmentation IoU/DICE,
parent/child ACC and NMI on a fixed held-out subset).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from onegan_tf import inference, metrics
from onegan_tf.autoencoder import AutoEncoder


def predict_in_batches(autoencoder: AutoEncoder, images, batch_size: int = 128):
    """Masks [N, H, W, 1] and parent/child ids [N] for images [N, H, W, 3] in [-1, 1]."""

    @tf.function(reduce_retracing=True)
    def run(batch):
        clusters = inference.cluster(autoencoder, batch)
        return inference.segment(autoencoder, batch), clusters["parent"], clusters["child"]

    masks, parents, children = [], [], []
    for start in range(0, len(images), batch_size):
        m, p, c = run(tf.convert_to_tensor(images[start:start + batch_size]))
        masks.append(m.numpy())
        parents.append(p.numpy())
        children.append(c.numpy())
    return np.concatenate(masks), np.concatenate(parents), np.concatenate(children)


def quick_metrics(autoencoder: AutoEncoder, examples: dict) -> dict[str, float]:
    """examples: dict of numpy arrays from data.evaluation_batch: "image", and whichever of
    "mask", "parent", "child" the dataset has (each metric needs its ground truth)."""
    masks, parents, children = predict_in_batches(autoencoder, examples["image"])
    results = {}
    if "mask" in examples:
        results["eval/iou"] = metrics.iou(masks, examples["mask"])
        results["eval/dice"] = metrics.dice(masks, examples["mask"])
    for level, predicted in (("parent", parents), ("child", children)):
        if level in examples:
            labels = examples[level]
            results[f"eval/{level}_acc"] = metrics.clustering_accuracy(labels, predicted)
            results[f"eval/{level}_nmi"] = metrics.normalized_mutual_information(labels,
                                                                                 predicted)
    return results
