"""Export a trained OneGAN for TF Serving (and TFLite):
`python -m onegan_tf.export --run_dir=runs/shapes --export_dir=export/shapes [--tflite]`.

Writes the next integer version `EXPORT_DIR/<N>/` atomically (`onegan_tf/serving/savedmodel.py`):
a SavedModel with every signature, from the EMA weights, and with `--tflite` also
`tflite/{cluster,segment}_{fp32,fp16,int8}.tflite`. Exit status 2 with one error line for a
missing or unusable run directory, non-finite weights or a file-system failure.
"""

from __future__ import annotations

import os
from pathlib import Path

from absl import flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

from onegan_tf import cli  # noqa: E402

FLAGS = flags.FLAGS


def main(argv):
    if cli.missing_arguments(argv, "run_dir"):
        return 2
    export_dir = FLAGS.export_dir or os.path.join(
        "export", Path(FLAGS.run_dir).resolve().name)
    from onegan_tf.serving.savedmodel import export_run

    try:
        path = export_run(FLAGS.run_dir, export_dir, tflite=FLAGS.tflite,
                          representative_examples=FLAGS.representative_examples)
    except (ValueError, FileNotFoundError, OSError, RuntimeError) as error:
        return cli.failed(error)
    print(f"exported {path}")
    for tfl in sorted((path / "tflite").glob("*.tflite")) if FLAGS.tflite else []:
        print(f"  {tfl.relative_to(path)}  {tfl.stat().st_size / 1e6:.2f} MB")
    return 0


def define_flags():
    """The CLI's flags (defined only when run as a program, so the library imports freely)."""
    flags.DEFINE_string("run_dir", None, "training run directory (config.json + checkpoints/)")
    flags.DEFINE_string("export_dir", None, "model base directory; default export/<run dir name>")
    flags.DEFINE_boolean("tflite", False,
                         "also convert cluster and segment to TFLite fp32/fp16/int8")
    flags.DEFINE_integer("representative_examples", 200,
                         "training images used to calibrate the int8 TFLite models")


run = cli.command(main, define_flags)  # the console script


if __name__ == "__main__":
    run()
