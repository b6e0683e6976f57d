"""How well can the reconstruction path's networks segment this data when told the true masks?

Usage: python benchmarks/supervised_ceiling.py [--preset=clutter] [--steps=1300] [--seed=0]
           [--eval_every=100] [--examples=1024] [--learning_rate=...] [--generated_from=RUN_DIR]

A ceiling for the unsupervised result, with the same networks and the same number of updates:
a fresh autoencoder of the preset (E_p, E_c, E_bg and the generators, the preset's sizes) is
trained on training images of a built-in dataset (`shapes` or `clutter`, which come with exact
masks) with one loss, the per-pixel binary cross-entropy between the reconstruction path's
predicted mask I_m (inference betas: encoder means and bypasses) and the true mask, at the
preset's batch size and learning rate (Adam, the preset's beta_1 / beta_2). Every `eval_every`
steps it prints the IoU of the held-out images (the evaluation's images and metric). The
default of 1,300 steps is the number of steps in which the `clutter` preset trains the
reconstruction paths (from step 700 to 2,000).

If this ceiling is far above the unsupervised IoU, the networks and the number of updates are
not what limits the masks; if it is near it, they are.

With --generated_from=RUN_DIR the training pairs are instead the images and masks that a
trained run's generation path (EMA weights, its own config) draws from random child codes and
z, and the held-out images are still real: how far do the masks of the model's own generated
images, the only place where the method shows its encoders a true mask (Eq. 16), carry to real
images, apart from everything else in GAN training?
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def mask_cross_entropy(predicted, true, epsilon: float = 1e-6):
    """Mean binary cross-entropy of soft masks `predicted` in [0, 1] against `true` in {0, 1}."""
    from keras import ops

    predicted = ops.clip(predicted, epsilon, 1.0 - epsilon)
    return ops.mean(-(true * ops.log(predicted) + (1.0 - true) * ops.log(1.0 - predicted)))


def generated_batches(autoencoder, batch_size: int, seed: int):
    """Infinite batches {"image", "mask"} (tf.Tensor) of the generation path: uniform child
    codes and z ~ N(0, I), stateless draws from (`seed`, batch index)."""
    import tensorflow as tf

    from onegan_tf.serving import inference

    cfg = autoencoder.config

    @tf.function(autograph=False)
    def draw(index):
        child = tf.random.stateless_uniform([batch_size], [seed, index], 0, cfg.num_children,
                                            tf.int32)
        z = tf.random.stateless_normal([batch_size, cfg.z_dim], [seed + 1, index])
        out = inference.generate(autoencoder, child, z)
        return {"image": out["image"], "mask": out["mask"]}

    return (draw(tf.constant(i, tf.int64)) for i in itertools.count())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="clutter")
    parser.add_argument("--steps", type=int, default=1300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval_every", type=int, default=100)
    parser.add_argument("--examples", type=int, default=1024)
    parser.add_argument("--learning_rate", type=float, default=None,
                        help="Adam learning rate (default: the preset's generator/encoder rate)")
    parser.add_argument("--generated_from", default=None,
                        help="train on the images and masks this run's generator draws")
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from onegan_tf import config as config_lib
    from onegan_tf import data
    from onegan_tf.evaluation import metrics
    from onegan_tf.evaluation.report import infer_in_batches
    from onegan_tf.serving import inference
    from onegan_tf.training import loop

    cfg = config_lib.preset(args.preset, seed=args.seed)
    if cfg.dataset not in data.SYNTHETIC:
        parser.error(f"--preset={args.preset}: needs a built-in dataset with true masks "
                     f"({', '.join(data.SYNTHETIC)}), not {cfg.dataset}")
    keras.utils.set_random_seed(args.seed)
    autoencoder = loop.build_model(cfg).autoencoder
    optimizer = keras.optimizers.Adam(args.learning_rate or cfg.learning_rate,
                                      beta_1=cfg.beta_1, beta_2=cfg.beta_2)
    held = {k: v.numpy() for k, v in data.evaluation_batch(cfg, args.examples).items()}
    if args.generated_from:
        generator = loop.restore_for_inference(args.generated_from, log=lambda *_: None).ema
        if generator.config.image_size != cfg.image_size:
            parser.error(f"--generated_from={args.generated_from}: "
                         f"{generator.config.image_size} px, the preset {cfg.image_size} px")
        stream = generated_batches(generator, cfg.batch_size, args.seed)
    else:
        stream = data.SYNTHETIC[cfg.dataset].object_dataset(
            seed=cfg.seed, image_size=cfg.image_size, batch_size=cfg.batch_size)

    @tf.function(reduce_retracing=True)
    def train_step(images, masks):
        with tf.GradientTape() as tape:
            loss = mask_cross_entropy(inference.segment(autoencoder, images), masks)
        variables = autoencoder.trainable_variables
        gradients = tape.gradient(loss, variables)
        optimizer.apply_gradients([(g, v) for g, v in zip(gradients, variables, strict=True)
                                   if g is not None])
        return loss

    def held_out_iou():
        masks = infer_in_batches(autoencoder, held["image"])["mask"]
        return metrics.iou(masks, held["mask"]), float(masks.mean())

    print(f"preset {args.preset} (dataset {cfg.dataset}, {cfg.image_size} px, batch "
          f"{cfg.batch_size}), seed {args.seed}, {args.steps} steps; held-out images "
          f"{len(held['image'])}, true mask area {held['mask'].mean():.3f}; training pairs: "
          + (f"generated by {args.generated_from}" if args.generated_from
             else "training images and their true masks"))
    started, losses = time.time(), []
    for step, batch in enumerate(itertools.islice(stream, args.steps), start=1):
        losses.append(float(train_step(batch["image"], batch["mask"])))
        if step % args.eval_every == 0 or step == args.steps:
            iou, area = held_out_iou()
            print(f"step {step}: cross-entropy {np.mean(losses):.4f}, held-out IoU {iou:.3f}, "
                  f"predicted area {area:.3f} ({(time.time() - started) / 60:.1f} min)",
                  flush=True)
            losses = []


if __name__ == "__main__":
    main()
