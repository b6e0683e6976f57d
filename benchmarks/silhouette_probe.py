"""Does the generation path's D_c look at silhouettes? A probe of a trained run's discriminator.

Usage: python benchmarks/silhouette_probe.py RUN_DIR [--examples=512]

On held-out `shapes`/`clutter` images (true mask and clean background known) it builds two
versions of every object, both painted in the object's mean colour over its true background:
"own" keeps the true silhouette, "disc" replaces it by a disc of the same area at the same
centroid. It prints D_c's mean real/fake probability on real images, generated images (the
trained, not the EMA, generator: the one D_c was trained against), "own" and "disc", and the
ROC AUC with which D_c's score tells "own" from "disc" (0.5 = blind to the silhouette) and real
from generated images.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def auc(positive, negative) -> float:
    """P(score of a random positive > score of a random negative), ties counted half."""
    positive, negative = np.asarray(positive)[:, None], np.asarray(negative)[None, :]
    return float(np.mean(positive > negative) + 0.5 * np.mean(positive == negative))


def flat_and_disc(images, masks, backgrounds):
    """-> (own silhouette, same-area disc), each filled with the object's mean colour."""
    size = images.shape[1]
    yy, xx = np.mgrid[:size, :size] + 0.5
    own, disc = [], []
    for image, mask, background in zip(images, masks[..., 0], backgrounds, strict=True):
        area = mask.sum()
        colour = (image * mask[..., None]).sum((0, 1)) / max(area, 1e-6)
        cy, cx = (yy * mask).sum() / area, (xx * mask).sum() / area
        circle = ((yy - cy) ** 2 + (xx - cx) ** 2 <= area / np.pi).astype(np.float32)
        for silhouette, out in ((mask, own), (circle, disc)):
            out.append(background * (1 - silhouette[..., None]) + colour * silhouette[..., None])
    return np.stack(own).astype(np.float32), np.stack(disc).astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--fresh_steps", type=int, default=0)
    parser.add_argument("--fresh_learning_rate", type=float, default=None,
                        help="the fresh network's Adam learning rate (default: the run's)")
    args = parser.parse_args()

    import tensorflow as tf

    from onegan_tf import data
    from onegan_tf.training import loop

    model = loop.restore_for_inference(args.run_dir)
    cfg = model.config
    held = {k: v.numpy() for k, v in data.evaluation_batch(cfg, args.examples).items()}
    own, disc = flat_and_disc(held["image"], held["mask"], held["background"])
    child = tf.random.stateless_uniform((args.examples,), (7, 0), 0, cfg.num_children, tf.int32)
    z = tf.random.stateless_normal((args.examples, cfg.z_dim), (7, 1))
    generated = model.autoencoder.generate(child, z)["image"].numpy()
    d_c = model.discriminator_pairs()["generation"][1]

    def score(network, images):
        out = [network(tf.constant(images[i:i + 64]))["real_fake"].numpy()
               for i in range(0, len(images), 64)]
        return np.concatenate(out)

    scores = {name: score(d_c, x) for name, x in (("real", held["image"]), ("generated", generated),
                                             ("own silhouette", own), ("disc", disc))}
    for name, s in scores.items():
        print(f"D_c on {name:15s}: mean P(real) {np.mean(1 / (1 + np.exp(-s))):.3f}")
    print(f"AUC own silhouette vs disc: {auc(scores['own silhouette'], scores['disc']):.3f}")
    print(f"AUC real vs generated:      {auc(scores['real'], scores['generated']):.3f}")
    if args.fresh_steps:
        import keras

        from onegan_tf.nets.discriminators import ObjectDiscriminator
        other = {k: v.numpy() for k, v in
                 data.evaluation_batch(cfg.replace(seed=cfg.seed + 100), 2048).items()}
        train_own, train_disc = flat_and_disc(other["image"], other["mask"], other["background"])
        fresh = ObjectDiscriminator(cfg.df_dim, cfg.image_size, cfg.num_children, cfg.d_norm)
        optimizer = keras.optimizers.Adam(args.fresh_learning_rate or cfg.learning_rate,
                                          beta_1=cfg.beta_1)
        rng = np.random.default_rng(0)
        labels = tf.concat([tf.ones(16), tf.zeros(16)], 0)
        for step in range(1, args.fresh_steps + 1):
            pick = rng.integers(0, len(train_own), 16)
            batch = tf.constant(np.concatenate([train_own[pick], train_disc[pick]]))
            with tf.GradientTape() as tape:
                logits = fresh(batch)["real_fake"]
                loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits))
            variables = fresh.adversarial_variables
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            if step % 100 == 0 or step == args.fresh_steps:
                print(f"fresh D_c after {step} steps: AUC own silhouette vs disc "
                      f"{auc(score(fresh, own), score(fresh, disc)):.3f}")


if __name__ == "__main__":
    main()
