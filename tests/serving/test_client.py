"""Tests for onegan_tf/serving/client.py (ServedModel: input checks, thread safety) and for the TF
Serving side of an export: the models.config in export/ and the gRPC client of export/README.md
against a local stand-in PredictionService (tests/grpc_server.py)."""

import re
import threading
from pathlib import Path

import grpc_server
import numpy as np
import pytest
import tensorflow as tf
from serving_inputs import png_bytes

TOL = 1e-5


def test_wrong_inputs_are_rejected_clearly(served, serving_images):
    with pytest.raises(ValueError, match=r"'images' must be float32 \[B, 32, 32, 3\], got "
                                         r"float64 \[2, 32, 32, 3\]"):
        served("segment", images=serving_images[:2].astype(np.float64))
    with pytest.raises(ValueError, match=r"got float32 \[2, 16, 16, 3\]"):
        served("segment", images=serving_images[:2, :16, :16])
    with pytest.raises(ValueError, match="expects inputs"):
        served("translate", images=serving_images[:2])
    with pytest.raises(ValueError, match="no signature 'segmnet'"):
        served("segmnet", images=serving_images[:2])
    # the raw signature (what TF Serving runs) refuses too, in the graph
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"not compatible with expected"):
        served.signatures["segment"](images=tf.zeros([1, 16, 16, 3]))
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        served.signatures["segment"](images=tf.zeros([1, 32, 32, 3], tf.float64))


def test_models_config_parses(repo_root):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse((repo_root / "export" / "models.config").read_text(),
                               model_server_config_pb2.ModelServerConfig())
    models = config.model_config_list.config
    assert models and all(m.model_platform == "tensorflow" for m in models)
    assert all(Path(m.base_path).name == m.name for m in models)


def test_readme_grpc_client_against_a_local_prediction_service(tiny_export, served, serving_images,
                                                               repo_root):
    readme = (repo_root / "export" / "README.md").read_text()
    client_code = re.search(r"```python\n(import grpc.*?)```", readme, re.S).group(1)
    namespace = {}
    exec(client_code, namespace)  # the README's client, as users copy it
    server, port = grpc_server.start_grpc_server(tiny_export, "tiny")
    try:
        target = f"127.0.0.1:{port}"
        masks = namespace["predict_grpc"](target, "tiny", "segment",
                                          {"images": serving_images[:3]})
        np.testing.assert_allclose(masks["mask"],
                                   served("segment", images=serving_images[:3])["mask"], atol=TOL)
        ids = namespace["predict_grpc"](target, "tiny", "cluster_bytes", {
            "image_bytes": np.array([png_bytes(serving_images[0])], dtype=object)})
        assert ids["child"].shape == (1,) and ids["child_probs"].shape == (1, 12)
        import grpc

        with pytest.raises(grpc.RpcError, match="must be float32"):
            namespace["predict_grpc"](target, "tiny", "segment", {"images": serving_images[:1, :8]})
    finally:
        server.stop(None)


def test_concurrent_calls_match_serial(served, serving_images):
    batches = [serving_images[i * 8:(i + 1) * 8] for i in range(8)]
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
