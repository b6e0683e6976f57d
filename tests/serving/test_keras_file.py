"""The trained autoencoder as a Keras file: `.keras` save and `keras.saving.load_model`, and the
copy that export writes beside the SavedModel."""

import json

import keras
import numpy as np

from onegan_tf.nets.autoencoder import AutoEncoder
from onegan_tf.serving import inference


def outputs(model, images, config):
    recon = inference.reconstruct(model, images)
    gen = inference.generate(model, np.arange(config.num_children), seed=7)
    return {**{f"recon/{k}": v.numpy() for k, v in recon.items()},
            **{f"gen/{k}": v.numpy() for k, v in gen.items()},
            "cluster": inference.cluster(model, images)["child_probs"].numpy()}


def test_keras_file_round_trip_gives_the_same_outputs(tiny_autoencoder, tiny_config,
                                                      serving_images, tmp_path):
    images = serving_images[:8]
    path = tmp_path / "model.keras"
    tiny_autoencoder.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, AutoEncoder) and loaded.config == tiny_config
    assert [v.path for v in loaded.weights] == [v.path for v in tiny_autoencoder.weights]
    expected = outputs(tiny_autoencoder, images, tiny_config)
    got = outputs(loaded, images, tiny_config)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], atol=1e-6, err_msg=key)
    # The comparison can fail: a fresh model of the same config computes something else.
    keras.utils.set_random_seed(123)
    fresh = AutoEncoder(tiny_config)
    fresh.build_all()
    other = outputs(fresh, images, tiny_config)
    assert np.abs(other["recon/mask"] - expected["recon/mask"]).max() > 1e-3


def test_export_writes_the_keras_file_beside_the_saved_model(tiny_export, served,
                                                             serving_images):
    manifest = json.loads((tiny_export / "assets.extra" / "export.json").read_text())
    assert manifest["keras_file"] == "onegan.keras"
    model = keras.saving.load_model(tiny_export / "onegan.keras")
    images = serving_images[:4]
    np.testing.assert_allclose(inference.segment(model, images).numpy(),
                               served("segment", images=images)["mask"], atol=1e-5)
