"""Throughput of the synthetic input pipelines, shapes or clutter (images/s, after warm-up).

Usage: python benchmarks/shapes_throughput.py [--dataset clutter] [--sizes 32 64 128]
       [--batch_size 32] [--seconds 3]
(`taskset -c 0 python ...` measures one core.)

"objects" and "backgrounds" time each dataset alone; "both" zips them, which is what a OneGAN
training step consumes (one object batch + one background batch), and counts object images.
"""

import argparse
import os
import time

import tensorflow as tf

from onegan_tf.data import clutter, shapes


def images_per_second(dataset, batch_size, seconds, warmup_batches=3):
    """Iterates `dataset` for about `seconds` after `warmup_batches`; returns images/s."""
    iterator = iter(dataset)
    for _ in range(warmup_batches):  # tracing, thread-pool start-up and AUTOTUNE ramp-up
        next(iterator)
    batches, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(iterator)
        batches += 1
    return batches * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["shapes", "clutter"], default="shapes")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    module = {"shapes": shapes, "clutter": clutter}[args.dataset]
    print(f"{args.dataset}: {len(os.sched_getaffinity(0))} CPUs, batch {args.batch_size}, "
          f"{args.seconds:g} s per measurement")
    print(
        f"{'size':>5} {'objects img/s':>14} {'backgrounds img/s':>18} {'both img/s':>11}"
        f" {'ms/batch (both)':>16}"
    )
    for size in args.sizes:
        common = {"seed": 0, "image_size": size, "batch_size": args.batch_size}
        objects = module.object_dataset(**common)
        backgrounds = module.background_dataset(**common)
        both = tf.data.Dataset.zip((objects, backgrounds))
        rates = [
            images_per_second(ds, args.batch_size, args.seconds)
            for ds in (objects, backgrounds, both)
        ]
        ms = 1000.0 * args.batch_size / rates[2]
        print(f"{size:>5} {rates[0]:>14.0f} {rates[1]:>18.0f} {rates[2]:>11.0f} {ms:>16.1f}")


if __name__ == "__main__":
    main()
