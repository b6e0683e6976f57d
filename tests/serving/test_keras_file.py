"""The trained autoencoder as a Keras file: `.keras` save and `keras.saving.load_model`, and the
copy that export writes beside the SavedModel."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from onegan_tf import data
from onegan_tf.nets.autoencoder import AutoEncoder
from onegan_tf.serving import inference, savedmodel


@pytest.fixture(scope="module")
def trained_like(tiny_config):
    """An autoencoder whose weights differ from a fresh one's (seeded init, then perturbed)."""
    keras.utils.set_random_seed(3)
    model = AutoEncoder(tiny_config)
    model.build_all()
    for v in model.trainable_weights:
        v.assign(v + 0.05 * np.sign(np.random.default_rng(1).standard_normal(v.shape)))
    return model


def outputs(model, images, config):
    recon = inference.reconstruct(model, images)
    gen = inference.generate(model, np.arange(config.num_children) % config.num_children,
                             seed=7)
    return {**{f"recon/{k}": v.numpy() for k, v in recon.items()},
            **{f"gen/{k}": v.numpy() for k, v in gen.items()},
            "cluster": inference.cluster(model, images)["child_probs"].numpy()}


def test_keras_file_round_trip_gives_the_same_outputs(trained_like, tiny_config, tmp_path):
    images = data.evaluation_batch(tiny_config, 8)["image"].numpy()
    path = tmp_path / "model.keras"
    trained_like.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, AutoEncoder) and loaded.config == tiny_config
    assert [v.path for v in loaded.weights] == [v.path for v in trained_like.weights]
    expected, got = outputs(trained_like, images, tiny_config), outputs(loaded, images,
                                                                       tiny_config)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], atol=1e-6, err_msg=key)
    # The comparison can fail: a fresh model of the same config computes something else.
    fresh = AutoEncoder(tiny_config)
    fresh.build_all()
    other = outputs(fresh, images, tiny_config)
    assert np.abs(other["recon/mask"] - expected["recon/mask"]).max() > 1e-3


def test_export_writes_a_loadable_keras_file(trained_like, tiny_config, tmp_path, repo_root,
                                             subprocess_env):
    version = savedmodel.export_autoencoder(trained_like, tmp_path / "tiny", log=lambda m: None)
    manifest = json.loads((version / "assets.extra" / "export.json").read_text())
    assert manifest["keras_file"] == "onegan.keras" and (version / "onegan.keras").is_file()
    # A fresh process: importing the class registers it; load_model needs nothing else.
    script = (
        "import sys, keras, numpy as np\n"
        "from onegan_tf.nets.autoencoder import AutoEncoder\n"
        "from onegan_tf.serving import client, inference\n"
        "model = keras.saving.load_model(sys.argv[1] + '/onegan.keras')\n"
        "images = np.load(sys.argv[2])\n"
        "served = client.ServedModel(sys.argv[1])('segment', images=images)['mask']\n"
        "print(float(np.abs(served - inference.segment(model, images).numpy()).max()))\n")
    images = data.evaluation_batch(tiny_config, 4)["image"].numpy()
    np.save(tmp_path / "images.npy", images)
    done = subprocess.run([sys.executable, "-c", script, str(version), str(tmp_path /
                          "images.npy")], capture_output=True, text=True, env=subprocess_env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.strip().splitlines()[-1]) < 1e-5
    # ... and it is the exported model, not any model of this config.
    mask = inference.segment(trained_like, images).numpy()
    fresh = AutoEncoder(tiny_config)
    fresh.build_all()
    assert np.abs(inference.segment(fresh, images).numpy() - mask).max() > 1e-3
