"""`python -m onegan_tf.predict`: PNGs, CSV, unreadable inputs skipped by name."""

import csv
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from onegan_tf import export, predict
from onegan_tf.autoencoder import AutoEncoder


@pytest.fixture(scope="module")
def model_dir(tiny_config, tmp_path_factory):
    keras.utils.set_random_seed(1)
    autoencoder = AutoEncoder(tiny_config)
    autoencoder.build_all()
    return export.export_autoencoder(autoencoder, tmp_path_factory.mktemp("e") / "tiny")


@pytest.fixture()
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    (folder / "a.png").write_bytes(tf.io.encode_png(rng.integers(0, 255, (40, 60, 3), np.uint8))
                                   .numpy())
    (folder / "b.jpg").write_bytes(tf.io.encode_jpeg(rng.integers(0, 255, (32, 32, 3), np.uint8))
                                   .numpy())
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def test_segment_and_cluster(model_dir, inputs, tmp_path):
    out = tmp_path / "out"
    result = predict.predict(model_dir, [str(inputs)], "segment", out, log=lambda m: None,
                             progress=False)
    assert len(result["skipped"]) == 1 and "broken.png" in result["skipped"][0]
    from PIL import Image

    assert Image.open(out / "a_mask.png").size == (60, 40)  # the input's size
    assert (out / "a_overlay.png").exists() and (out / "b_mask.png").exists()
    predict.predict(model_dir, [str(inputs / "a.png"), str(inputs / "b.jpg")], "cluster", out,
                    progress=False)
    rows = list(csv.DictReader(open(out / "clusters.csv")))
    assert [r["file"].split("/")[-1] for r in rows] == ["a.png", "b.jpg"]
    assert 0 <= int(rows[0]["child"]) < 12 and len(rows[0]) == 5 + 12


def test_cli_translate_and_errors(model_dir, inputs, tmp_path, subprocess_env):
    command = [sys.executable, "-m", "onegan_tf.predict", f"--model={model_dir}",
               f"--input={inputs}", f"--output={tmp_path / 'o'}"]
    done = subprocess.run(command + ["--task=translate", "--child_id=3"], env=subprocess_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "broken.png" in done.stderr and (tmp_path / "o" / "a_child3.png").exists()
    assert (tmp_path / "o" / "b_child3.png").exists()
    with pytest.raises(ValueError, match="needs --child_id"):
        predict.predict(model_dir, [str(inputs)], "translate", tmp_path / "p")
    with pytest.raises(ValueError, match="children 0..11"):
        predict.predict(model_dir, [str(inputs)], "translate", tmp_path / "p", child_id=12)
