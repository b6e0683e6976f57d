"""Tests for the helpers of the probe scripts in benchmarks/ (parent cue, silhouette,
supervised ceiling)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def parent_cue():
    return _load("parent_cue_probe")


@pytest.mark.parametrize("parents", [[0, 0, 1, 1, 2, 2], [3, 1, 1, 1, 0], [0, 1]])
def test_every_partner_has_another_parent(parent_cue, parents):
    partner = parent_cue.other_parent_partner(parents)
    parents = np.asarray(parents)
    assert partner.shape == parents.shape
    assert np.all(parents[partner] != parents)


def test_one_parent_has_no_partner(parent_cue):
    with pytest.raises(ValueError, match="one parent"):
        parent_cue.other_parent_partner([2, 2, 2])


def test_follow_shares_known_answers(parent_cue):
    shares = parent_cue.follow_shares([0, 1, 2, 3], [0, 1, 0, 0], [1, 0, 2, 3])
    assert shares == {"object": 0.5, "background": 0.5}
    assert parent_cue.follow_shares([5, 5], [5, 5], [1, 2]) == {"object": 1.0, "background": 0.0}


def test_silhouette_probe_auc_known_answers():
    probe = _load("silhouette_probe")
    assert probe.auc([2, 3], [0, 1]) == 1.0
    assert probe.auc([0, 1], [2, 3]) == 0.0
    assert probe.auc([1, 1], [1, 1]) == 0.5


def test_supervised_ceiling_cross_entropy_known_answers():
    probe = _load("supervised_ceiling")
    true = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    assert float(probe.mask_cross_entropy(np.full_like(true, 0.5), true)) == pytest.approx(
        np.log(2.0), rel=1e-6)
    assert float(probe.mask_cross_entropy(true, true)) < 1e-5
    assert float(probe.mask_cross_entropy(1.0 - true, true)) > 10.0  # clipped, not infinite


def test_supervised_ceiling_generated_batches(tiny_autoencoder):
    probe = _load("supervised_ceiling")
    size = tiny_autoencoder.config.image_size
    stream = probe.generated_batches(tiny_autoencoder, 3, seed=0)
    first, second = next(stream), next(stream)
    assert first["image"].shape == (3, size, size, 3) and first["mask"].shape == (3, size, size, 1)
    assert 0.0 <= float(np.min(first["mask"])) and float(np.max(first["mask"])) <= 1.0
    assert not np.array_equal(first["image"].numpy(), second["image"].numpy())  # new draws
    again = next(probe.generated_batches(tiny_autoencoder, 3, seed=0))
    np.testing.assert_array_equal(again["image"].numpy(), first["image"].numpy())
