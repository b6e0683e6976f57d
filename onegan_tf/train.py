"""Train OneGAN: `python -m onegan_tf.train [--flagfile=flags/cub.flags] [--FIELD=VALUE ...]`
(installed: `onegan-train --preset=cub [--FIELD=VALUE ...]`).

With no flags it trains the `shapes` demo on the built-in synthetic data into runs/shapes.
Running the same command again resumes from the last checkpoint.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

from onegan_tf import cli  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    """The CLI's flags (defined only when run as a program, so the module imports freely)."""
    flags.DEFINE_boolean("dry_run", False, "print the resolved config and exit")
    flags.DEFINE_boolean("restart_unreadable", False,
                         "when the run dir holds checkpoints and none can be restored, move them "
                         "to checkpoints/damaged/ and start over (default: stop with an error)")
    cli.define_config_flags()


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
    from onegan_tf.training import (
        callbacks,  # TensorFlow only when training
        loop,
        rundir,
    )

    try:
        loop.train(config, restart_unreadable=FLAGS.restart_unreadable)
    except (ValueError, FileNotFoundError, NotImplementedError,
            rundir.CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except callbacks.NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except OSError as error:  # file-system faults: fileio.FileSystemError names path and operation
        print(f"error: {error}", file=sys.stderr)
        return 4
    return 0


run = cli.command(main, define_flags)  # the console script


if __name__ == "__main__":
    run()
