"""Shared pytest setup: quiet TensorFlow, the repo on sys.path, and the fixtures that several test
files use (tiny configs and models, held-out images, one export, the evaluator networks).

The test files mirror the package (tests/nets/test_layers.py tests onegan_tf/nets/layers.py);
this file serves every folder. Session-scoped objects are shared read-only: tests that train or
assign build their own model (training mutates weights, optimizer state and the traced train
function).
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# onegan_tf first: importing it chooses TensorFlow's CPU kernels, as in every command.
import onegan_tf  # noqa: E402,F401

# isort: split
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402  (imported once, after the log level is set)

from onegan_tf import config as config_lib  # noqa: E402

EVALUATOR_STEPS = 400  # enough for the small CNN to pass its 0.9 accuracy gate at 32 px
SHAPE_CLASSIFIER_STEPS = 500  # ~0.99 held-out accuracy at 32 px (0.985 after 300 steps)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def subprocess_env():
    """Environment for `python -m onegan_tf...` subprocesses: repo importable, TF quiet."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    return env


# --- tiny models ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_config():
    """32 px, very narrow networks, batch 4, a 30-step schedule (Phase II at 10, real recon at
    20)."""
    return config_lib.preset("tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_config):
    """A built and compiled (never trained) OneGAN. Read-only: do not fit or assign to it."""
    from onegan_tf.training import loop

    keras.utils.set_random_seed(0)
    return loop.build_model(tiny_config)


@pytest.fixture(scope="session")
def tiny_autoencoder(tiny_config):
    """A built (never trained) AutoEncoder on its own, as exported. Read-only."""
    from onegan_tf.nets.autoencoder import AutoEncoder

    keras.utils.set_random_seed(0)
    model = AutoEncoder(tiny_config)
    model.build_all()
    return model


@pytest.fixture(scope="session")
def rebuild_from_config():
    """A function (net, inputs) -> clone: builds `type(net).from_config(net.get_config())`,
    copies net's weights into it and checks that it has the same weight shapes and computes
    the same outputs."""

    def rebuild(net, inputs):
        clone = type(net).from_config(net.get_config())
        out = net(inputs)
        clone(inputs)
        assert [w.shape for w in clone.weights] == [w.shape for w in net.weights]
        clone.set_weights(net.get_weights())
        for x, y in zip(tf.nest.flatten(out), tf.nest.flatten(clone(inputs))):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5)
        return clone

    return rebuild


# --- images -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def held_out_images(tiny_config):
    """One batch (4) of held-out shapes images, tf.Tensor [4, 32, 32, 3] in [-1, 1]."""
    from onegan_tf import data

    return data.evaluation_batch(tiny_config, tiny_config.batch_size)["image"]


@pytest.fixture(scope="session")
def serving_images(tiny_config):
    """64 held-out shapes images, numpy float32 [64, 32, 32, 3] in [-1, 1]."""
    from onegan_tf import data

    return data.evaluation_batch(tiny_config, 64)["image"].numpy()


@pytest.fixture(scope="session")
def random_images():
    """3 uniform random images, tf.Tensor [3, 32, 32, 3] in [-1, 1]."""
    return tf.random.stateless_uniform((3, 32, 32, 3), (1, 2), -1.0, 1.0)


@pytest.fixture()
def input_folder(tmp_path):
    """Image files for `predict`: a.png (60 x 40), a.jpg (32 x 32) and an unreadable
    broken.png."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    (folder / "a.png").write_bytes(tf.io.encode_png(rng.integers(0, 255, (40, 60, 3), np.uint8))
                                   .numpy())
    (folder / "a.jpg").write_bytes(tf.io.encode_jpeg(rng.integers(0, 255, (32, 32, 3), np.uint8))
                                   .numpy())
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


# --- one export -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_export(tiny_autoencoder, tmp_path_factory):
    """Version 1 of <tmp>/tiny: the SavedModel of tiny_autoencoder (no TFLite files)."""
    from onegan_tf.serving import savedmodel

    base = tmp_path_factory.mktemp("export") / "tiny"
    return savedmodel.export_autoencoder(tiny_autoencoder, base, log=lambda *_: None)


@pytest.fixture(scope="session")
def served(tiny_export):
    """tiny_export loaded once (client.ServedModel) for the library calls."""
    from onegan_tf.serving import client

    return client.ServedModel(tiny_export)


# --- evaluator networks (trained once, cached in a session directory) -------------------------
@pytest.fixture(scope="session")
def evaluator_cache(tmp_path_factory):
    """(cache dir, the shapes evaluator trained into it, its training log lines)."""
    from onegan_tf.evaluation import networks

    cache = tmp_path_factory.mktemp("evaluator_cache")
    logs = []
    judge = networks.shapes_evaluator(32, cache, steps=EVALUATOR_STEPS, log=logs.append)
    return cache, judge, logs


@pytest.fixture(scope="session")
def shape_classifier(evaluator_cache):
    """(the mask classifier, its training log lines), trained with a small budget into the
    evaluator cache, so that evaluation runs load it."""
    from onegan_tf.evaluation import networks

    cache, _, _ = evaluator_cache
    logs = []
    classifier = networks.shape_classifier(32, cache_dir=cache, steps=SHAPE_CLASSIFIER_STEPS,
                                            log=logs.append)
    return classifier, logs
