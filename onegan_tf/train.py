"""Train OneGAN: `python -m onegan_tf.train [--flagfile=flags/cub.flags] [--FIELD=VALUE ...]`.

With no flags it trains the `shapes` demo on the built-in synthetic data into runs/shapes.
Running the same command again resumes from the last checkpoint.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

from onegan_tf import cli  # noqa: E402

flags.DEFINE_boolean("dry_run", False, "print the resolved config and exit")
cli.define_config_flags()
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        config = cli.config_from_flags()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if FLAGS.dry_run:
        print(config.to_json())
        return 0
    from onegan_tf import callbacks, train_lib  # TensorFlow is imported only when training

    try:
        train_lib.train(config)
    except (ValueError, FileNotFoundError, NotImplementedError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except callbacks.NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    app.run(main)
