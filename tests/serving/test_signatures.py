"""Tests for onegan_tf/serving/signatures.py: every signature of the export against the in-memory
model, the encoded-image (`_bytes`) variants, and the in-graph input checks that TF Serving
runs."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from serving_inputs import CHILD_RANGE, FLOAT_RANGE, eight_bit, png_bytes

from onegan_tf.serving import inference, signatures

TOL = 1e-5


def test_every_signature_matches_the_in_memory_model(served, tiny_autoencoder, serving_images):
    x, ae = serving_images[:4], tiny_autoencoder
    child = np.array([0, 3, 5, 11], np.int32)
    z = np.random.default_rng(0).normal(size=(4, ae.config.z_dim)).astype(np.float32)
    seed = np.array([1, 2, 3, 4], np.int32)
    expected = {
        "segment": {"mask": inference.segment(ae, x)},
        "cluster": inference.cluster(ae, x),
        "reconstruct": inference.reconstruct(ae, x),
        "remove_object": {"background": inference.remove_object(ae, x)},
        "translate": {"image": inference.translate(ae, x, child)},
        "generate": inference.generate(ae, child, signatures.seeded_z(seed, ae.config.z_dim)),
        "generate_from_z": inference.generate(ae, child, z),
    }
    inputs = {"translate": {"images": x, "child_id": child},
              "generate": {"child_id": child, "seed": seed},
              "generate_from_z": {"child_id": child, "z": z}}
    encoded = np.array([png_bytes(image) for image in x], dtype=object)
    for name, want in expected.items():
        got = served(name, **inputs.get(name, {"images": x}))
        assert sorted(got) == sorted(want), name
        for key in want:
            diff = np.max(np.abs(got[key] - np.asarray(want[key])))
            assert diff <= TOL, (name, key, diff)
        if name in signatures.IMAGE_SIGNATURES:  # PNG round trip at the model size: 8-bit steps
            extra = {"child_id": child} if name == "translate" else {}
            got = served(f"{name}_bytes", image_bytes=encoded, **extra)
            for key in want:
                if got[key].dtype == np.float32:
                    assert np.max(np.abs(got[key] - np.asarray(want[key]))) < 0.1, name
    assert served.signatures["serving_default"](images=tf.constant(x))["mask"].shape == (4, 32,
                                                                                         32, 1)


def test_bytes_signatures_take_any_size_and_format(served, serving_images):
    big = tf.image.resize(serving_images[:1], [77, 53]).numpy()[0]
    jpeg = tf.io.encode_jpeg(tf.cast((big + 1) * 127.5, tf.uint8)).numpy()
    gray = tf.io.encode_png(tf.zeros([20, 40, 1], tf.uint8)).numpy()
    out = served("segment_bytes", image_bytes=np.array([jpeg, gray], dtype=object))
    assert out["mask"].shape == (2, 32, 32, 1)


def test_saved_model_cli_lists_every_signature(tiny_export):
    cli = Path(sys.executable).parent / "saved_model_cli"
    shown = subprocess.run([str(cli), "show", "--dir", str(tiny_export), "--all"],
                           capture_output=True, text=True, timeout=120, check=True).stdout
    listed = set(re.findall(r"signature_def\['(\w+)'\]", shown))
    assert listed == set(signatures.SIGNATURES) | {"serving_default", "__saved_model_init_op"}


BAD_SIGNATURE_INPUTS = {
    "child_id_too_large": ("translate", lambda x: {
        "images": x[:2], "child_id": np.array([3, 99], np.int32)}, CHILD_RANGE),
    "child_id_negative": ("generate", lambda x: {
        "child_id": np.array([-1], np.int32), "seed": np.array([0], np.int32)}, CHILD_RANGE),
    "child_id_bytes": ("translate_bytes", lambda x: {
        "image_bytes": np.array([png_bytes(x[0])], dtype=object),
        "child_id": np.array([12], np.int32)}, CHILD_RANGE),
    "eight_bit_floats": ("segment", lambda x: {"images": eight_bit(x[:2]).astype(np.float32)},
                         FLOAT_RANGE),
    "empty_images": ("cluster", lambda x: {"images": x[:0]}, r"images: empty batch"),
    "empty_child_ids": ("generate_from_z", lambda x: {
        "child_id": np.zeros([0], np.int32), "z": np.zeros([0, 8], np.float32)},
        r"child_id: empty batch"),
    "empty_bytes": ("segment_bytes", lambda x: {"image_bytes": np.array([], dtype=object)},
                    r"image_bytes: empty batch"),
}


@pytest.mark.parametrize("case", sorted(BAD_SIGNATURE_INPUTS))
def test_signatures_reject_bad_values_naming_the_input(case, served, serving_images):
    signature, make, message = BAD_SIGNATURE_INPUTS[case]
    inputs = make(serving_images)
    # what TF Serving runs: the signature's own assertion, with that text
    tensors = {k: tf.constant(v, tf.string if v.dtype == object else None)
               for k, v in inputs.items()}
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        served.signatures[signature](**tensors)
    with pytest.raises(ValueError, match=f"^{signature}: {message}"):
        served(signature, **inputs)
