"""Tests for onegan_tf/evaluation/networks.py, the evaluator networks: the shapes evaluator and
the mask (shape) classifier, trained once per session into a cache (conftest.py) and gated on
held-out accuracy, damaged caches, and InceptionV3 evaluators from local files."""

import keras
import numpy as np
import pytest

from onegan_tf import config as config_lib
from onegan_tf import data
from onegan_tf.evaluation import metrics, networks


def test_shapes_evaluator_is_accurate_and_cached(evaluator_cache):
    cache, judge, logs = evaluator_cache
    assert judge.info["accuracy"] >= 0.9
    assert any("training the shapes evaluator" in line for line in logs)
    cached = list(cache.glob("shapes-evaluator-*.weights.h5"))
    assert len(cached) == 1 and not list(cache.glob(".*tmp*"))
    # The second call loads the cache (no training) and gives the same outputs.
    logs2 = []
    again = networks.shapes_evaluator(32, cache, steps=1, log=logs2.append)  # from the cache
    assert logs2 == []
    images = np.random.default_rng(0).uniform(-1, 1, (5, 32, 32, 3)).astype(np.float32)
    f1, p1 = judge(images)
    f2, p2 = again(images)
    assert f1.shape == (5, 128) and p1.shape == (5, networks.SHAPES_CLASSES)
    np.testing.assert_allclose(p1, p2, atol=1e-5)
    np.testing.assert_allclose(p1.sum(1), 1.0, atol=1e-5)
    # Inputs of another size are resized, not refused.
    assert judge(np.zeros((2, 48, 48, 3), np.float32))[1].shape == (2, 12)
    with pytest.raises(ValueError, match=r"images \[N, H, W, 3\]"):
        judge(np.zeros((2, 32, 32), np.float32))


def test_damaged_cache_is_retrained_and_a_weak_evaluator_refused(evaluator_cache, tmp_path):
    cache, _, _ = evaluator_cache
    damaged = tmp_path / next(cache.glob("shapes-evaluator-*.weights.h5")).name
    damaged.write_bytes(b"broken")
    logs = []
    # Retraining starts; 3 steps cannot reach the accuracy gate, so nothing is cached.
    with pytest.raises(RuntimeError, match="held-out accuracy"):
        networks.shapes_evaluator(32, tmp_path, steps=3, log=logs.append)
    assert "cannot read cached evaluator" in logs[0] and "training" in logs[1]
    assert damaged.read_bytes() == b"broken" and not list(tmp_path.glob(".*tmp*"))


def test_shape_classifier_is_accurate_cached_and_judges_masks(shape_classifier,
                                                               evaluator_cache):
    classifier, logs = shape_classifier
    cache, _, _ = evaluator_cache
    assert classifier.info["accuracy"] >= networks.SHAPE_CLASSIFIER_MIN_ACCURACY == 0.97
    assert any("training the shape classifier" in line for line in logs)
    assert len(list(cache.glob("shapes-mask-classifier-*-32px-4families-*.weights.h5"))) == 1
    logs2 = []
    again = networks.shape_classifier(32, cache_dir=cache, steps=1, log=logs2.append)
    assert logs2 == []  # loaded, not trained
    # True held-out masks (the evaluation images): their families, up to the gate.
    truth = data.evaluation_batch(config_lib.preset("tiny"), 256)
    masks, parents = truth["mask"].numpy(), truth["parent"].numpy()
    families = again(masks)
    np.testing.assert_array_equal(families, classifier(masks))
    assert np.mean(families == parents) >= 0.95
    # Treated as generated images whose codes' parents are the true parents renamed, the true
    # masks score ~1; soft masks are judged at 0.5 like binary ones.
    children = np.array([3, 0, 2, 1])[parents] * 3 + np.arange(256) % 3
    assert metrics.shape_accuracy(children, families, 12, 4) >= 0.95
    np.testing.assert_array_equal(classifier(masks * 0.4 + 0.3), families)
    # Degenerate masks: all foreground (or all the same) -> one family -> 1 / N_P.
    codes = np.arange(96) % 12
    for degenerate in (np.ones((96, 32, 32, 1)), np.repeat(masks[:1], 96, axis=0)):
        assert metrics.shape_accuracy(codes, classifier(degenerate), 12, 4) == 0.25
    # Masks of another size are resized, not refused.
    assert classifier(np.ones((2, 64, 64, 1))).shape == (2,)
    with pytest.raises(ValueError, match=r"masks \[N, H, W, 1\]"):
        classifier(np.ones((2, 32, 32, 3)))


def test_damaged_shape_classifier_cache_is_retrained(shape_classifier, evaluator_cache,
                                                     tmp_path):
    cache, _, _ = evaluator_cache
    damaged = tmp_path / next(cache.glob("shapes-mask-classifier-*.weights.h5")).name
    damaged.write_bytes(b"broken")
    logs = []
    with pytest.raises(RuntimeError, match="held-out accuracy"):
        networks.shape_classifier(32, cache_dir=tmp_path, steps=2, log=logs.append)
    assert "cannot read cached shape classifier" in logs[0] and "training" in logs[1]
    assert damaged.read_bytes() == b"broken"


def test_mask_classifier_starts_from_its_seed():
    """The same seed builds the same initial network (a retrained cache is the same
    classifier); another seed another one."""
    weights = lambda seed: [w.numpy() for w in networks.mask_classifier_model(  # noqa: E731
        32, 4, seed=seed).weights]
    first, again, other = weights(7), weights(7), weights(8)
    assert len(first) == len(again) == len(other) > 0
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    kernels = [(a, c) for a, c in zip(first, other) if a.ndim > 1]
    assert kernels and all(not np.allclose(a, c) for a, c in kernels)


def test_inception_evaluators_from_local_files(tmp_path):
    model = networks.inception_classifier(3, image_size=75)
    model.save(str(tmp_path / "fine.keras"))
    judge = networks.load_evaluator(tmp_path / "fine.keras")
    images = np.random.default_rng(2).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    features, probs = judge(images)  # resized to 75 px inside
    assert features.shape == (2, 2048) and probs.shape == (2, 3)
    np.testing.assert_allclose(probs, model(keras.ops.image.resize(images, (75, 75),
                                                                  antialias=True))[1],
                               atol=1e-4)
    notop = keras.applications.InceptionV3(include_top=False, weights=None,
                                           input_shape=(75, 75, 3))
    notop.save_weights(str(tmp_path / "notop.weights.h5"))
    with pytest.raises(ValueError, match="fine-tune them first"):
        networks.load_evaluator(tmp_path / "notop.weights.h5")
    with pytest.raises(FileNotFoundError, match="--evaluator_weights"):
        networks.load_evaluator(tmp_path / "absent.keras")
    with pytest.raises(ValueError, match="at least 75 px"):
        networks.inception_classifier(3, image_size=32)
