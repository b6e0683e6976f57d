"""Input pipelines: two streams per step, object images and clean backgrounds (docs/data.md).

`training_dataset(config, start_step)` is what the trainer consumes: batches of
{"image": [B, H, W, 3], "background": [B, H, W, 3]} float32 in [-1, 1]. Ground truth (masks,
labels) never reaches training; it is kept for evaluation only.

Datasets: `shapes` and `clutter` (built in, `shapes.py`, `clutter.py`), `cub` / `dogs` / `cars`
(prepared TFDS data, `tfds_data.py`), `folder` (a user's own images, `folder.py`). Every check
of the input (missing folders, unprepared TFDS data, unreadable files) runs when the pipeline is
built, in Python, and raises ValueError or FileNotFoundError naming the path and the flag.
"""

from __future__ import annotations

import tensorflow as tf

from onegan_tf.config import Config
from onegan_tf.data import clutter, folder, shapes, tfds_data

# The built-in synthetic datasets. Their hierarchy is fixed (4 shape families x 3 appearances);
# the model's N_P / N_C are free to over-cluster it.
SYNTHETIC = {"shapes": shapes, "clutter": clutter}
# Seed offsets keep the evaluation images disjoint from the training stream.
EVAL_SEED_OFFSET = 7919


def training_dataset(config: Config, start_step: int = 0) -> tf.data.Dataset:
    """Infinite batches of (object image, clean background) pairs, resumable at `start_step`."""
    if config.dataset == "folder":
        return folder.training_dataset(config, start_step)
    if config.dataset not in SYNTHETIC:
        return tfds_data.training_dataset(config, start_step)
    synthetic = SYNTHETIC[config.dataset]
    start = start_step * config.batch_size
    objects = synthetic.object_dataset(
        seed=config.seed, image_size=config.image_size, batch_size=config.batch_size,
        start_index=start)
    backgrounds = synthetic.background_dataset(
        seed=config.seed, image_size=config.image_size, batch_size=config.batch_size,
        start_index=start)
    return tf.data.Dataset.zip(objects, backgrounds).map(
        lambda obj, bg: {"image": obj["image"], "background": bg},
        num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def check_training_data(config: Config):
    """The cheap checks of the training input (folders present, not empty), so that bad input
    fails before a run directory or a model exists. The full checks run in training_dataset."""
    if config.dataset == "folder":
        folder.check_layout(config)


def evaluation_batch(config: Config, size: int) -> dict[str, tf.Tensor]:
    """A fixed batch of held-out object images with the ground truth the dataset has.

    Always "image" [N, H, W, 3] in [-1, 1] (N <= size for real data). shapes, clutter: also
    "mask" [N, H, W, 1], "parent", "child", "background". cub: "mask", "child" (the species).
    dogs / cars: "child" only, no masks. folder: "mask" / "parent" + "child" only when
    eval/masks/ / eval/labels.csv exist. Callers must check which keys are present.
    """
    if config.dataset == "folder":
        return folder.evaluation_batch(config, size)
    if config.dataset not in SYNTHETIC:
        return tfds_data.evaluation_batch(config, size)
    return SYNTHETIC[config.dataset].render_objects(
        tf.range(size, dtype=tf.int64), seed=config.seed + EVAL_SEED_OFFSET,
        image_size=config.image_size)
