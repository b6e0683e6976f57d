"""The reference FID protocol for InceptionV3 evaluators: 8-bit images, unbiased covariances,
training objects as the reference set; the in-project evaluator keeps its own protocol."""

import keras
import numpy as np
import pytest
from scipy import linalg

from onegan_tf.evaluation import metrics, networks, report


def reference_fid(a, b):
    """The textbook formula with np.cov (1/(n-1)) and scipy's sqrtm."""
    m1, m2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(s1 @ s2).real
    return float(np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * root))


def test_unbiased_fid_matches_the_textbook_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 6))
    b = rng.normal(0.3, 1.5, size=(30, 6))
    assert metrics.fid(a, b, unbiased=True) == pytest.approx(reference_fid(a, b), rel=1e-6)
    # 1/n differs from 1/(n-1) measurably at this n: the flag is not a no-op.
    assert abs(metrics.fid(a, b) - metrics.fid(a, b, unbiased=True)) > 1e-3


def test_quantised_images_lie_on_the_8_bit_grid():
    images = np.random.default_rng(1).uniform(-1.2, 1.2, (2, 5, 5, 3)).astype(np.float32)
    q = metrics.quantised(images)
    levels = (q + 1) * 127.5
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)
    assert q.min() >= -1 and q.max() <= 1
    assert np.abs(q - np.clip(images, -1, 1)).max() <= 0.5 / 127.5 + 1e-6
    np.testing.assert_array_equal(metrics.quantised(q), q)


@pytest.fixture(scope="module")
def inception_like():
    """A real `Evaluator` around a small classifier, named as the InceptionV3 ones are."""
    keras.utils.set_random_seed(0)
    evaluator = networks.Evaluator(networks.small_classifier(16, 4, width=8), "inception-test")
    assert evaluator.reference_protocol
    return evaluator


def test_reference_protocol_quantises_and_uses_the_training_reference(inception_like):
    rng = np.random.default_rng(2)
    generated = {"image": rng.uniform(-1, 1, (24, 16, 16, 3)).astype(np.float32),
                 "child": np.arange(24) % 4}
    examples = {"image": rng.uniform(-1, 1, (20, 16, 16, 3)).astype(np.float32)}
    batches = [{"image": rng.uniform(-1, 1, (8, 16, 16, 3)).astype(np.float32)}
               for _ in range(5)]
    reference = report.training_reference_features(inception_like, batches, 30)
    assert reference.shape[0] == 30
    expected_reference = inception_like(metrics.quantised(
        np.concatenate([b["image"] for b in batches])[:30]))[0]
    np.testing.assert_allclose(reference, expected_reference, atol=1e-5)

    out, _ = report._evaluator_metrics(inception_like, generated, examples, reference)
    gen_features = inception_like(metrics.quantised(generated["image"]))[0]
    assert out["fid"] == pytest.approx(metrics.fid(reference, gen_features, unbiased=True),
                                       rel=1e-6)
    assert "8-bit" in out["fid_protocol"] and "30 training objects" in out["fid_protocol"]
    # Images off the 8-bit grid score as their quantised versions do.
    again, _ = report._evaluator_metrics(
        inception_like, {**generated, "image": metrics.quantised(generated["image"])},
        examples, reference)
    assert again["fid"] == pytest.approx(out["fid"], rel=1e-6)
    with pytest.raises(ValueError, match="only 40 images.*needs 41"):
        report.training_reference_features(inception_like, batches, 41)


def test_in_project_evaluator_keeps_its_protocol():
    keras.utils.set_random_seed(0)
    small = networks.Evaluator(networks.small_classifier(16, 4, width=8), "shapes-classifier")
    assert not small.reference_protocol
    rng = np.random.default_rng(3)
    generated = {"image": rng.uniform(-1, 1, (24, 16, 16, 3)).astype(np.float32),
                 "child": np.arange(24) % 4}
    examples = {"image": rng.uniform(-1, 1, (20, 16, 16, 3)).astype(np.float32)}
    out, _ = report._evaluator_metrics(small, generated, examples)
    real, gen = small(examples["image"])[0], small(generated["image"])[0]
    assert out["fid"] == pytest.approx(metrics.fid(real, gen), rel=1e-6)
    assert "comparable only within this project" in out["fid_protocol"]
