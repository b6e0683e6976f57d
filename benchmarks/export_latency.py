"""Exported-model numbers: SavedModel `segment` images/s, and per TFLite file its size, CPU
latency per image and agreement with the SavedModel on held-out evaluation images.

Usage:
  python benchmarks/export_latency.py --model=export/shapes/1          # an existing export
  python benchmarks/export_latency.py --preset=cub --export_dir=/tmp/x # an untrained model of
                                        # that preset (speed does not depend on the weights)
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from onegan_tf import config as config_lib  # noqa: E402
from onegan_tf.serving import (
    client,
    savedmodel,
    tflite,
)


def images_per_second(fn, images, seconds):
    fn(images)  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(images)
        count += len(images)
    return count / (time.perf_counter() - start)


def evaluation_images(model: client.ServedModel, count: int):
    size = model.image_size
    try:
        from onegan_tf import data

        config = config_lib.preset("shapes", image_size=size)
        return data.evaluation_batch(config, count)["image"].numpy()
    except Exception:  # no evaluation data for this size: uniform noise (speed only)
        return np.random.default_rng(0).uniform(-1, 1, (count, size, size, 3)).astype("float32")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an export version dir (export/NAME/N)")
    parser.add_argument("--preset", default="cub", help="without --model: untrained preset")
    parser.add_argument("--export_dir", default="/tmp/onegan_export_benchmark")
    parser.add_argument("--tflite", action="store_true", help="without --model: also convert")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--examples", type=int, default=256, help="evaluation images")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    path = args.model
    if path is None:
        from onegan_tf.nets.autoencoder import AutoEncoder

        keras.utils.set_random_seed(0)
        autoencoder = AutoEncoder(config_lib.preset(args.preset))
        autoencoder.build_all()
        images = np.random.default_rng(0).uniform(
            -1, 1, (8, autoencoder.config.image_size, autoencoder.config.image_size, 3))
        started = time.perf_counter()
        path = savedmodel.export_autoencoder(autoencoder, args.export_dir, tflite=args.tflite,
                                         representative=images.astype("float32"))
        print(f"exported {path} in {time.perf_counter() - started:.0f}s "
              f"({autoencoder.count_params():,} parameters)")
    model = client.ServedModel(path)
    size = model.image_size
    saved = sum(f.stat().st_size for f in __import__("pathlib").Path(path).rglob("*")
                if f.is_file() and "tflite" not in f.parts)
    print(f"SavedModel {path}: {saved / 1e6:.1f} MB, {size} px")
    batch = evaluation_images(model, args.batch_size)
    for name in ("segment", "cluster"):
        rate = images_per_second(lambda x, n=name: model(n, images=x), batch, args.seconds)
        print(f"  SavedModel {name}: {rate:.1f} images/s (batch {args.batch_size}, CPU)")

    examples = evaluation_images(model, args.examples)
    reference = {name: model(name, images=examples) for name in ("segment", "cluster")}
    for tfl in sorted(__import__("pathlib").Path(path, "tflite").glob("*.tflite")):
        signature, mode = tfl.stem.rsplit("_", 1)
        run = tflite.tflite_runner(tfl, signature)
        outputs = {k: np.concatenate([run(images=examples[i:i + 1])[k]
                                      for i in range(len(examples))]) for k in
                   reference[signature]}
        one = examples[:1]
        run(images=one)
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < min(args.seconds, 3.0):
            run(images=one)
            reps += 1
        latency = (time.perf_counter() - start) / reps * 1e3
        key = "child_probs" if signature == "cluster" else "mask"
        diff = float(np.max(np.abs(outputs[key] - reference[signature][key])))
        line = (f"  {tfl.name}: {tfl.stat().st_size / 1e6:.2f} MB, {latency:.2f} ms/image, "
                f"max |{key} - SavedModel| = {diff:.2e}")
        if signature == "cluster":
            agree = float(np.mean(outputs["child"] == reference["cluster"]["child"]))
            line += f", child argmax agreement {agree:.1%}"
        print(line)


if __name__ == "__main__":
    main()
