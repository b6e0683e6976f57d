"""Does z matter? A grid of generated images: rows = different z, columns = every child code.

Usage: python benchmarks/z_grid.py RUN_DIR [--rows=6] [--weights=ema|raw] [--output=FILE]

Loads the newest checkpoint of RUN_DIR and writes RUN_DIR/z_grid_WEIGHTS.png: six rows of
images (one z per row, the same z across a row), then the masks of the first three rows. It
prints the mean absolute pixel difference between images of one code under different z (0 when
the generator ignores z) and the mean generated mask area.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--rows", type=int, default=6, help="number of z (at least 2)")
    parser.add_argument("--weights", choices=("ema", "raw"), default="ema")
    parser.add_argument("--output", default=None, help="PNG path (default in RUN_DIR)")
    parser.add_argument("--seed", type=int, default=5, help="seed of the z draws")
    args = parser.parse_args()
    if args.rows < 2:
        parser.error("--rows must be at least 2")

    import tensorflow as tf

    from onegan_tf.evaluation import grids
    from onegan_tf.training import loop

    model = loop.restore_for_inference(args.run_dir)
    autoencoder = model.ema if args.weights == "ema" else model.autoencoder
    cfg = model.config
    child = tf.range(cfg.num_children, dtype=tf.int32)
    z = np.random.default_rng(args.seed).standard_normal((args.rows, cfg.z_dim))
    images, masks = [], []
    for row in z.astype(np.float32):
        out = autoencoder.generate(child, tf.constant(np.repeat(row[None], cfg.num_children, 0)))
        images.append(out["image"].numpy())
        masks.append(out["mask"].numpy())
    stack = np.stack(images, 1)  # [codes, rows, H, W, 3]
    gaps = [np.abs(stack[:, i] - stack[:, j]).mean()
            for i in range(args.rows) for j in range(i + 1, args.rows)]
    output = Path(args.output or Path(args.run_dir) / f"z_grid_{args.weights}.png")
    grids.save_png(output, grids.tile([grids.to_uint8(r) for r in images]
                                      + [grids.to_uint8(m, (0.0, 1.0)) for m in masks[:3]]))
    print(f"pixel gap between z (mean |I(c, z_i) - I(c, z_j)|, [-1, 1] scale): "
          f"{np.mean(gaps):.4f}; mean mask area {np.mean(masks):.3f}; grid: {output}")


if __name__ == "__main__":
    main()
