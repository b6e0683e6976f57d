"""Metrics against known answers (hand-made masks, permuted labels, a worked NMI example)."""

import math

import numpy as np
import pytest

from onegan_tf import metrics


def _masks(*rows):
    return np.array(rows, np.float32).reshape(len(rows), 1, -1, 1)


def test_iou_and_dice_on_hand_made_masks():
    pred = _masks([1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1])
    true = _masks([1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1])
    # image 1: |P∩T| = 1, |P∪T| = 2; image 2: both empty -> 1; image 3: 2 / 4.
    assert metrics.iou(pred, true) == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    # DICE: 2*1/(2+1), 1, 2*2/(4+2).
    assert metrics.dice(pred, true) == pytest.approx((2 / 3 + 1.0 + 2 / 3) / 3)


def test_soft_masks_are_thresholded_at_one_half():
    pred = _masks([0.51, 0.49])
    true = _masks([1, 0])
    assert metrics.iou(pred, true) == 1.0
    assert metrics.dice(pred, true) == 1.0


def test_accuracy_is_one_for_permuted_labels_and_matches_hungarian_otherwise():
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    assert metrics.clustering_accuracy(labels, (labels + 1) % 3) == 1.0
    # Two clusters for three classes: the best matching covers classes 2 (3) and 0 (2).
    clusters = np.array([5, 5, 5, 5, 9, 9, 9])
    assert metrics.clustering_accuracy(labels, clusters) == pytest.approx(5 / 7)


def test_nmi_worked_example():
    labels, clusters = [0, 0, 1, 1], [0, 0, 0, 1]
    # Joint: (0,0)=1/2, (1,0)=1/4, (1,1)=1/4; marginals L=(1/2,1/2), C=(3/4,1/4).
    mutual = (0.5 * math.log(0.5 / (0.5 * 0.75)) + 0.25 * math.log(0.25 / (0.5 * 0.75))
              + 0.25 * math.log(0.25 / (0.5 * 0.25)))
    h_l = math.log(2)
    h_c = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    expected = mutual / ((h_l + h_c) / 2)
    assert metrics.normalized_mutual_information(labels, clusters) == pytest.approx(expected)
    assert expected == pytest.approx(0.3437, abs=1e-4)


def test_nmi_is_one_for_renamed_partition_and_zero_for_independent():
    labels = np.repeat(np.arange(4), 25)
    assert metrics.normalized_mutual_information(labels, labels * 7 + 3) == pytest.approx(1.0)
    independent = np.tile(np.arange(5), 20)  # every class spread evenly over every cluster
    assert metrics.normalized_mutual_information(labels, independent) == pytest.approx(0.0)


def test_mismatched_sizes_raise():
    with pytest.raises(ValueError, match="differ in size"):
        metrics.clustering_accuracy([0, 1], [0, 1, 2])


def test_centred_ellipse_baseline_area():
    masks = metrics.centred_ellipse_masks(2, 64, fraction=0.5)
    assert masks.shape == (2, 64, 64, 1)
    # Area of an ellipse with half-axes 0.5 of the half-size: pi/4 * 0.25 of the image.
    assert masks.mean() == pytest.approx(math.pi * 0.25 / 4, abs=0.01)
    assert masks[0, 32, 32, 0] == 1 and masks[0, 0, 0, 0] == 0
