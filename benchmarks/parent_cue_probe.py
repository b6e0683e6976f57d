"""Which cue does E_p read the parent from: the object or the background? A probe of a trained run.

Usage: python benchmarks/parent_cue_probe.py RUN_DIR [--examples=1024]

Eq. 12 is the only generation loss that ties the parent code to the image. If E_p reads the
parent from the background (whose code follows the parent, Eq. 1), the generator earns nothing
by drawing each parent's own silhouette. Two swaps, each scored as the share of images whose
predicted parent follows the object and the share that follows the background:

- real: held-out `shapes`/`clutter` images with their object pasted (true mask) over the clean
  background of an image of another parent. E_p's clusters are matched to the true parents by
  Hungarian matching on the unswapped images.
- generated: the object layer (I_fg, I_m) of one parent's code composed over the background of
  another parent's code, same z. E_p is trained to output the code's parent on generated
  images (Eq. 12), so no matching is needed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def other_parent_partner(parents) -> np.ndarray:
    """For each example, the index of a later example (cyclically) with a different parent."""
    parents = np.asarray(parents).ravel()
    if len(np.unique(parents)) < 2:
        raise ValueError("the held-out images hold one parent: nothing to swap with")
    count, partner = len(parents), np.empty(len(parents), np.int64)
    for i in range(count):
        j = next((i + k) % count for k in range(1, count) if parents[(i + k) % count] != parents[i])
        partner[i] = j
    return partner


def follow_shares(predicted, object_parent, background_parent) -> dict:
    """Shares of predictions equal to the object's parent and to the background's parent."""
    predicted = np.asarray(predicted)
    return {"object": float(np.mean(predicted == np.asarray(object_parent))),
            "background": float(np.mean(predicted == np.asarray(background_parent)))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--examples", type=int, default=1024)
    args = parser.parse_args()

    import tensorflow as tf

    from onegan_tf import data
    from onegan_tf.evaluation import metrics
    from onegan_tf.nets.generators import compose
    from onegan_tf.training import loop

    model = loop.restore_for_inference(args.run_dir)
    ae, cfg = model.ema, model.config

    def parent_of(images):
        out = [ae.shape_encoder(tf.constant(images[i:i + 128]))["parent_logits"].numpy()
               for i in range(0, len(images), 128)]
        return np.argmax(np.concatenate(out), axis=-1)

    held = {k: v.numpy() for k, v in data.evaluation_batch(cfg, args.examples).items()}
    parents, masks = held["parent"].ravel(), held["mask"]
    to_cluster = metrics.match_conditions(parents, parent_of(held["image"]))
    partner = other_parent_partner(parents)
    swapped = held["image"] * masks + held["background"][partner] * (1 - masks)
    cluster = np.vectorize(lambda p: to_cluster.get(int(p), -1))
    real = follow_shares(parent_of(swapped), cluster(parents), cluster(parents[partner]))
    print(f"real, object over another parent's background: E_p follows the object "
          f"{real['object']:.3f}, the background {real['background']:.3f}")

    children_per_parent = cfg.num_children // cfg.num_parents
    child = tf.random.stateless_uniform((args.examples,), (11, 0), 0, cfg.num_children, tf.int32)
    shift = tf.random.stateless_uniform((args.examples,), (11, 1), 1, cfg.num_parents, tf.int32)
    other = (child + shift * children_per_parent) % cfg.num_children  # another parent's child
    z = tf.random.stateless_normal((args.examples, cfg.z_dim), (11, 2))
    first, second = ae.generate(child, z), ae.generate(other, z)
    mixed = compose(second["background"], first["foreground"], first["mask"]).numpy()
    object_parent, background_parent = (
        metrics.code_parents(c.numpy(), cfg.num_children, cfg.num_parents) for c in (child, other))
    generated = follow_shares(parent_of(mixed), object_parent, background_parent)
    print(f"generated, one parent's object over another's background: E_p follows the object "
          f"{generated['object']:.3f}, the background {generated['background']:.3f}")


if __name__ == "__main__":
    main()
