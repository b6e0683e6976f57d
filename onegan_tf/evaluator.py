"""Fine-tune InceptionV3 on a dataset's labels, as the evaluator of FID / IS / CFID / CIS:

    python -m onegan_tf.evaluator --preset=cub --data_dir=~/tensorflow_datasets \\
        --init_weights=inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5 \\
        --output=evaluators/cub_inception.keras

then `python -m onegan_tf.evaluate --evaluator_weights=evaluators/cub_inception.keras`. The
networks themselves: `onegan_tf/evaluation/networks.py`.
"""

from __future__ import annotations

import os

from absl import flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

from onegan_tf import cli  # noqa: E402

FLAGS = flags.FLAGS


def main(argv):
    from onegan_tf.evaluation.networks import finetune

    if cli.missing_arguments(argv, "output", note="(a .keras file)"):
        return 2
    try:
        config = cli.config_from_flags()
        path = finetune(config, FLAGS.init_weights, FLAGS.output, steps=FLAGS.steps,
                        batch_size=FLAGS.finetune_batch_size,
                        image_size=FLAGS.evaluator_image_size,
                        learning_rate=FLAGS.finetune_learning_rate)
    except (ValueError, FileNotFoundError) as error:
        return cli.failed(error)
    print(f"wrote {path}; use it with python -m onegan_tf.evaluate --evaluator_weights={path}")
    return 0


def define_flags():
    cli.define_config_flags()
    flags.DEFINE_string("init_weights", None, "InceptionV3 weights to start from (a local "
                        "ImageNet .h5, with or without the top); default random")
    flags.DEFINE_string("output", None, "the fine-tuned evaluator, a .keras file")
    flags.DEFINE_integer("steps", 3000, "fine-tuning steps")
    flags.DEFINE_integer("finetune_batch_size", 32, "fine-tuning batch size")
    flags.DEFINE_integer("evaluator_image_size", 299, "InceptionV3 input size")
    flags.DEFINE_float("finetune_learning_rate", 1e-4, "Adam learning rate")


run = cli.command(main, define_flags)  # the console script


if __name__ == "__main__":
    run()
