"""Export (versioned, atomic, EMA weights), the SavedModel signatures, TF Serving config and
gRPC client, TFLite conversions, thread safety. One tiny model is exported once per module."""

import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import grpc_server
import keras
import numpy as np
import pytest
import tensorflow as tf

from onegan_tf import data, serving
from onegan_tf.nets.autoencoder import AutoEncoder
from onegan_tf.serving import (
    client,
    inference,
    savedmodel,
    signatures,
    tflite,
)

TOL = 1e-5


@pytest.fixture(scope="module")
def autoencoder(tiny_config):
    keras.utils.set_random_seed(0)
    model = AutoEncoder(tiny_config)
    model.build_all()
    return model


@pytest.fixture(scope="module")
def exported(autoencoder, tmp_path_factory, tiny_config):
    """Version 1 of <tmp>/tiny (untrained) with the cluster TFLite files."""
    base = tmp_path_factory.mktemp("export") / "tiny"
    representative = tflite.representative_images(tiny_config, 16)
    path = savedmodel.export_autoencoder(autoencoder, base, tflite=True,
                                     representative=representative,
                                     tflite_signatures=("cluster",))
    return path


@pytest.fixture(scope="module")
def served(exported):
    return client.ServedModel(exported)


@pytest.fixture(scope="module")
def images(tiny_config):
    return data.evaluation_batch(tiny_config, 64)["image"].numpy()


def png_bytes(array):
    return tf.io.encode_png(tf.cast(tf.round((array + 1) * 127.5), tf.uint8)).numpy()


def test_version_layout_and_next_version(exported, autoencoder, tmp_path):
    assert exported.name == "1" and (exported / "saved_model.pb").exists()
    assert sorted(p.name for p in exported.parent.parent.iterdir()) == ["tiny"]  # no temp left
    assert (exported / "assets.extra" / "export.json").exists()
    (tmp_path / "m" / "7").mkdir(parents=True)
    (tmp_path / "m" / "notes").mkdir()
    assert savedmodel.next_version(tmp_path / "m") == 8


def test_interrupted_export_leaves_no_version(autoencoder, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(serving, "build_archive", broken)
    with pytest.raises(RuntimeError):
        savedmodel.export_autoencoder(autoencoder, tmp_path / "m")
    assert list((tmp_path / "m").iterdir()) == [] and len(list(tmp_path.iterdir())) == 1


def test_every_signature_matches_the_in_memory_model(served, autoencoder, images):
    x, ae = images[:4], autoencoder
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


def test_bytes_signatures_take_any_size_and_format(served, images):
    big = tf.image.resize(images[:1], [77, 53]).numpy()[0]
    jpeg = tf.io.encode_jpeg(tf.cast((big + 1) * 127.5, tf.uint8)).numpy()
    gray = tf.io.encode_png(tf.zeros([20, 40, 1], tf.uint8)).numpy()
    out = served("segment_bytes", image_bytes=np.array([jpeg, gray], dtype=object))
    assert out["mask"].shape == (2, 32, 32, 1)


def test_saved_model_cli_lists_every_signature(exported):
    cli = Path(sys.executable).parent / "saved_model_cli"
    shown = subprocess.run([str(cli), "show", "--dir", str(exported), "--all"],
                           capture_output=True, text=True, timeout=120, check=True).stdout
    listed = set(re.findall(r"signature_def\['(\w+)'\]", shown))
    assert listed == set(signatures.SIGNATURES) | {"serving_default", "__saved_model_init_op"}


def test_wrong_inputs_are_rejected_clearly(served, images):
    with pytest.raises(ValueError, match=r"'images' must be float32 \[B, 32, 32, 3\], got "
                                         r"float64 \[2, 32, 32, 3\]"):
        served("segment", images=images[:2].astype(np.float64))
    with pytest.raises(ValueError, match=r"got float32 \[2, 16, 16, 3\]"):
        served("segment", images=images[:2, :16, :16])
    with pytest.raises(ValueError, match="expects inputs"):
        served("translate", images=images[:2])
    with pytest.raises(ValueError, match="no signature 'segmnet'"):
        served("segmnet", images=images[:2])
    # the raw signature (what TF Serving runs) refuses too, in the graph
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"not compatible with expected"):
        served.signatures["segment"](images=tf.zeros([1, 16, 16, 3]))
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        served.signatures["segment"](images=tf.zeros([1, 32, 32, 3], tf.float64))


CHILD_RANGE = r"child_id: expected ids in \[0, 11\] \(the model has 12 children\)"
FLOAT_RANGE = r"images: expected float values in \[-1, 1\]"


def eight_bit(images):
    """The 0..255 values a caller may send by mistake."""
    return np.round((images + 1) * 127.5)


# name: (signature, inputs from the test images, message); every one reaches the graph
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
def test_signatures_reject_bad_values_naming_the_input(case, served, images):
    signature, make, message = BAD_SIGNATURE_INPUTS[case]
    inputs = make(images)
    # what TF Serving runs: the signature's own assertion, with that text
    tensors = {k: tf.constant(v, tf.string if v.dtype == object else None)
               for k, v in inputs.items()}
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        served.signatures[signature](**tensors)
    with pytest.raises(ValueError, match=f"^{signature}: {message}"):
        served(signature, **inputs)


@pytest.mark.parametrize("call, message", [
    (lambda ae, x: inference.translate(ae, x[:2], 12), CHILD_RANGE + ", got 12"),
    (lambda ae, x: inference.translate(ae, x[:2], [0, -1]), CHILD_RANGE + ", got -1"),
    (lambda ae, x: inference.generate(ae, [99]), CHILD_RANGE + ", got 99"),
    (lambda ae, x: inference.mix(ae, x[:2], child_id=12), CHILD_RANGE),
    (lambda ae, x: inference.segment(ae, eight_bit(x[:2]).astype(np.uint8)),
     r"images: expected float32 \[B, 32, 32, 3\] in \[-1, 1\], got uint8 values; scale"),
    (lambda ae, x: inference.cluster(ae, eight_bit(x[:2])), FLOAT_RANGE + r" \(got min \d+, "
                                                            r"max \d+\); scale 8-bit images"),
    (lambda ae, x: inference.reconstruct(ae, x[:2, :16, :16]),
     r"images: expected float32 \[B, 32, 32, 3\] in \[-1, 1\], got shape \[2, 16, 16, 3\]"),
    (lambda ae, x: inference.remove_object(ae, x[:0]), r"images: empty batch"),
    (lambda ae, x: inference.generate(ae, np.zeros([0], np.int32)), r"child_id: empty batch"),
    (lambda ae, x: inference.generate(ae, [1, 2], np.zeros([2, 5])),
     r"z: expected float32 \[B, 8\] with B = 2"),
], ids=["translate_12", "translate_-1", "generate_99", "mix_12", "uint8", "eight_bit_floats",
        "size_16", "empty_images", "empty_child_ids", "z_size"])
def test_python_api_rejects_bad_inputs_naming_the_argument(call, message, autoencoder, images):
    with pytest.raises(ValueError, match=message):
        call(autoencoder, images)


def test_tflite_runner_checks_its_inputs(exported, autoencoder, images, tmp_path):
    run = tflite.tflite_runner(exported / "tflite" / "cluster_fp32.tflite", "cluster")
    for inputs, message in (
            ({"images": eight_bit(images[:1]).astype(np.uint8)}, "got uint8 values"),
            ({"images": eight_bit(images[:1]).astype(np.float32)}, FLOAT_RANGE),
            ({"images": images[:1, :16, :16]}, r"got shape \[1, 16, 16, 3\]"),
            ({"images": images[:0]}, "images: empty batch"),
            ({"image": images[:1]}, "expects inputs")):
        with pytest.raises(ValueError, match=message):
            run(**inputs)
    # child ids: `generate_from_z` (the cheapest signature with child ids), converted here as
    # an export would, into <version>/tflite/
    tflite.save_tflite_source(autoencoder, tmp_path / "source", ("generate_from_z",))
    (tmp_path / "1" / "tflite").mkdir(parents=True)
    path = tmp_path / "1" / "tflite" / "generate_from_z_fp32.tflite"
    path.write_bytes(tflite.convert_tflite(tmp_path / "source", "generate_from_z", "fp32"))
    shutil.copytree(exported / "assets.extra", tmp_path / "1" / "assets.extra")
    run = tflite.tflite_runner(path, "generate_from_z")  # num_children from export.json
    z = np.zeros([1, 8], np.float32)
    assert run(child_id=np.array([11], np.int32), z=z)["image"].shape == (1, 32, 32, 3)
    for child_id, message in (([12], CHILD_RANGE + ", got 12"), ([-1], CHILD_RANGE + ", got -1"),
                              ([], "child_id: empty batch")):
        with pytest.raises(ValueError, match=message):
            run(child_id=np.array(child_id, np.int32), z=z[:len(child_id)])


def test_models_config_parses(repo_root):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse((repo_root / "export" / "models.config").read_text(),
                               model_server_config_pb2.ModelServerConfig())
    models = config.model_config_list.config
    assert models and all(m.model_platform == "tensorflow" for m in models)
    assert all(Path(m.base_path).name == m.name for m in models)


def test_readme_grpc_client_against_a_local_prediction_service(exported, served, images,
                                                               repo_root):
    readme = (repo_root / "export" / "README.md").read_text()
    client_code = re.search(r"```python\n(import grpc.*?)```", readme, re.S).group(1)
    namespace = {}
    exec(client_code, namespace)  # the README's client, as users copy it
    server, port = grpc_server.start_grpc_server(exported, "tiny")
    try:
        target = f"127.0.0.1:{port}"
        masks = namespace["predict_grpc"](target, "tiny", "segment", {"images": images[:3]})
        np.testing.assert_allclose(masks["mask"], served("segment", images=images[:3])["mask"],
                                   atol=TOL)
        ids = namespace["predict_grpc"](target, "tiny", "cluster_bytes", {
            "image_bytes": np.array([png_bytes(images[0])], dtype=object)})
        assert ids["child"].shape == (1,) and ids["child_probs"].shape == (1, 12)
        import grpc

        with pytest.raises(grpc.RpcError, match="must be float32"):
            namespace["predict_grpc"](target, "tiny", "segment", {"images": images[:1, :8]})
    finally:
        server.stop(None)


def test_tflite_cluster_matches_saved_model(exported, served, images):
    reference = served("cluster", images=images)
    for mode, tolerance in (("fp32", 1e-4), ("fp16", 1e-2), ("int8", None)):
        run = tflite.tflite_runner(exported / "tflite" / f"cluster_{mode}.tflite", "cluster")
        got = {k: np.concatenate([run(images=images[i:i + 1])[k] for i in range(len(images))])
               for k in ("child", "child_probs", "parent_probs")}
        if tolerance is not None:
            for key in ("child_probs", "parent_probs"):
                assert np.max(np.abs(got[key] - reference[key])) <= tolerance, (mode, key)
        else:
            # This model is untrained: some images have near-tied child logits, where int8
            # noise decides the argmax. Agreement is required where the SavedModel's top-2
            # gap is >= 0.05 (the trained shapes demo: 100% on 256 images, no filter).
            top2 = np.sort(reference["child_probs"], axis=-1)[:, -2:]
            decisive = top2[:, 1] - top2[:, 0] >= 0.05
            agree = got["child"] == reference["child"]
            assert decisive.sum() >= 32 and agree[decisive].mean() >= 0.95
            assert agree.mean() >= 0.8


def test_concurrent_calls_match_serial(served, images):
    batches = [images[i * 8:(i + 1) * 8] for i in range(8)]
    serial = [served("segment", images=b)["mask"] for b in batches]
    results = [None] * 8
    barrier = threading.Barrier(8)

    def work(i):
        barrier.wait()
        results[i] = served.signatures["segment"](images=tf.constant(batches[i]))["mask"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for want, got in zip(serial, results):
        np.testing.assert_array_equal(want, got.numpy())
