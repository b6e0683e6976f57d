"""Tests for the helpers of the probe scripts in benchmarks/ (parent cue, silhouette)."""

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
