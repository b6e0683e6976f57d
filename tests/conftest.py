"""Shared pytest setup: quiet TensorFlow, the repo on sys.path, tiny configs and models.

Models built here are shared read-only. Tests that train build their own model (training
mutates weights, optimizer state and the traced train function).
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402, F401  (imported once, after the log level is set)

from onegan_tf import config as config_lib  # noqa: E402


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def tiny_config():
    """32 px, very narrow networks, a 30-step schedule (Phase II at 10, real recon at 20)."""
    return config_lib.preset("tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_config):
    """A built and compiled (never trained) OneGAN. Read-only: do not fit or assign to it."""
    from onegan_tf.training import loop

    keras.utils.set_random_seed(0)
    return loop.build_model(tiny_config)


@pytest.fixture(scope="session")
def subprocess_env():
    """Environment for `python -m onegan_tf...` subprocesses: repo importable, TF quiet."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    return env
