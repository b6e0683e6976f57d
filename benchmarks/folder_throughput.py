"""Throughput of the folder input pipeline (images/s, after warm-up) on generated JPEGs.

Usage: python benchmarks/folder_throughput.py [--num_images 500] [--image_size 128]
       [--batch_size 20] [--seconds 5]

Writes --num_images JPEGs of random sizes (300-500 px a side) plus a fifth as many backgrounds
to a temporary folder, then reports the one-off load time (decode + resize + cache, PIL threads)
and the training pipeline's rate in object images/s, which is what a training step consumes.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from onegan_tf import config as config_lib  # noqa: E402
from onegan_tf.data import folder  # noqa: E402


def write_jpegs(directory: Path, count: int, rng) -> None:
    directory.mkdir(parents=True)
    for i in range(count):
        w, h = (int(v) for v in rng.integers(300, 501, 2))
        # Smooth colour field plus noise: compresses like a photo, not like a flat image.
        y, x = np.mgrid[0:h, 0:w] / max(h, w)
        base = rng.uniform(0, 255, 3) * (0.5 + 0.5 * np.sin(6 * x + 4 * y))[..., None]
        noise = rng.normal(0, 12, (h, w, 3))
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(directory / f"{i:05d}.jpg", quality=90)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_images", type=int, default=500)
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        write_jpegs(root / "images", args.num_images, rng)
        write_jpegs(root / "backgrounds", max(1, args.num_images // 5), rng)
        print(f"wrote {args.num_images} + {max(1, args.num_images // 5)} JPEGs in "
              f"{time.perf_counter() - started:.1f}s")
        config = config_lib.preset("tiny", dataset="folder", data_dir=str(root),
                                   image_size=args.image_size, batch_size=args.batch_size)
        started = time.perf_counter()
        objects, backgrounds = folder.training_arrays(config)
        load = time.perf_counter() - started
        total = len(objects) + len(backgrounds)
        print(f"{os.cpu_count()} CPUs; load (decode, resize, cache) {total} files in {load:.2f}s "
              f"= {total / load:.0f} files/s")
        iterator = iter(folder.training_dataset(config))
        for _ in range(5):  # warm-up: tracing, thread pools, AUTOTUNE
            next(iterator)
        batches, started = 0, time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            next(iterator)
            batches += 1
        rate = batches * args.batch_size / (time.perf_counter() - started)
        print(f"training pipeline at {args.image_size} px, batch {args.batch_size}: "
              f"{rate:.0f} object images/s (+ as many backgrounds)")


if __name__ == "__main__":
    main()
