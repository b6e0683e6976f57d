"""Tests for onegan_tf/evaluation/metrics.py against known answers (hand-made masks, permuted
labels, a worked NMI example)."""

import math

import numpy as np
import pytest

from onegan_tf.evaluation import metrics


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


# --- generation metrics ---------------------------------------------------------------------

def test_fid_is_zero_for_identical_statistics_and_symmetric():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(500, 4)), rng.normal(size=(400, 4)) * 1.5 + 0.3
    assert metrics.fid(a, a) == pytest.approx(0.0, abs=1e-9)
    assert metrics.fid(a, b) == pytest.approx(metrics.fid(b, a), rel=1e-9)
    assert metrics.fid(a, b) > 0.1


def test_frechet_distance_matches_closed_form_for_known_gaussians():
    # Commuting covariances: d = |m1 - m2|^2 + sum (sqrt(l1) - sqrt(l2))^2 over eigenvalues.
    rotation, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    cov1 = rotation @ np.diag(var1) @ rotation.T
    cov2 = rotation @ np.diag(var2) @ rotation.T
    mean1, mean2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = 5.0 + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)  # 5 + 4 + 1 + 0
    assert metrics.frechet_distance(mean1, cov1, mean2, cov2) == pytest.approx(expected)
    # Non-commuting 1-D-rank example: Tr(S1 + S2 - 2 (S1 S2)^1/2) with known (S1 S2)^1/2.
    s1, s2 = np.diag([4.0, 0.0]), np.array([[1.0, 1.0], [1.0, 1.0]])
    # sqrt of S1^1/2 S2 S1^1/2 = sqrt([[4, 0], [0, 0]]) -> trace 2.
    assert metrics.frechet_distance([0, 0], s1, [0, 0], s2) == pytest.approx(4 + 2 - 4)


def test_fid_from_samples_approaches_the_closed_form():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(200_000, 2)) * [1.0, 2.0]
    b = rng.normal(size=(200_000, 2)) * [3.0, 2.0] + [2.0, 0.0]
    assert metrics.fid(a, b) == pytest.approx(4.0 + 4.0, abs=0.05)


def test_inception_score_known_answers():
    same = np.tile([[0.2, 0.3, 0.5]], (10, 1))
    assert metrics.inception_score(same) == pytest.approx(1.0)
    # Confident and uniform over C classes: IS = C.
    assert metrics.inception_score(np.eye(4)[np.arange(40) % 4]) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="rows summing to 1"):
        metrics.inception_score(np.ones((3, 3)))


def test_conditional_inception_score_product_and_extremes():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.full(6, 0.3), size=600)
    conditions = rng.integers(0, 5, size=600)
    cis = metrics.conditional_inception_score(probs, conditions)
    # The product relation of Benny et al. 2020: IS = BCIS * WCIS.
    assert cis["bcis"] * cis["wcis"] == pytest.approx(metrics.inception_score(probs))
    # Each condition always gives its own class: BCIS = #classes, WCIS = 1.
    perfect = metrics.conditional_inception_score(np.eye(3)[np.arange(30) % 3],
                                                  np.arange(30) % 3)
    assert perfect["bcis"] == pytest.approx(3.0) and perfect["wcis"] == pytest.approx(1.0)
    # Conditions ignored (same mixture for every condition): BCIS = 1.
    ignored = metrics.conditional_inception_score(np.eye(3)[np.arange(30) % 3],
                                                  np.arange(30) // 3 % 2)
    assert ignored["bcis"] == pytest.approx(1.0, abs=0.05)


def test_conditional_fid_zero_bound_and_class_swap():
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(4), 300)
    centres = rng.normal(size=(4, 3)) * 3
    real = centres[labels] + rng.normal(size=(1200, 3))
    same = metrics.conditional_fid(real, labels, real, labels)
    assert same["bcfid"] == pytest.approx(0, abs=1e-9)
    assert same["wcfid"] == pytest.approx(0, abs=1e-9)
    # A generator whose marginal is right but classes are swapped: FID ~ 0, WCFID large.
    swapped = (labels + 1) % 4
    gen = centres[labels] + rng.normal(size=(1200, 3))
    cfid = metrics.conditional_fid(real, labels, gen, swapped)
    assert metrics.fid(real, gen) < 0.2 < 5 < cfid["wcfid"]
    # The upper-bound relation: FID <= BCFID + WCFID, for arbitrary generated sets.
    for scale in (0.5, 1.0, 2.0):
        other = centres[labels] * scale + rng.normal(size=(1200, 3)) * scale + 0.5
        bound = metrics.conditional_fid(real, labels, other, labels)
        assert metrics.fid(real, other) <= bound["bcfid"] + bound["wcfid"] + 1e-9


def test_match_conditions_is_hungarian():
    conditions = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    predicted = np.array([5, 5, 7, 7, 7, 5, 9, 9])
    assert metrics.match_conditions(conditions, predicted) == {0: 5, 1: 7, 2: 9}


def test_masked_l1_and_psnr_known_answer():
    target = -np.ones((2, 4, 4, 3))  # black in [-1, 1]
    pred = target.copy()
    pred[:, :2] = 0.0  # mid-grey (0.5 in 0-1 scale) on the top half
    region = np.zeros((2, 4, 4, 1))
    region[:, :2] = 1
    l1, psnr = metrics.masked_l1_psnr(pred, target, region)
    assert l1 == pytest.approx(0.5)
    assert psnr == pytest.approx(10 * math.log10(1 / 0.25))
    with pytest.raises(ValueError, match="empty region"):
        metrics.masked_l1_psnr(pred, target, np.zeros_like(region))


def test_smooth_fill_recovers_a_quadratic_background_and_keeps_the_rest():
    y, x = np.mgrid[0:16, 0:16] / 15 * 2 - 1
    background = np.stack([0.3 * x * x - 0.2 * y, 0.1 + 0.5 * x * y, -0.4 * y * y + 0.2], -1)
    background = np.repeat(background[None], 2, 0)
    images = background.copy()
    region = np.zeros((2, 16, 16, 1))
    region[0, 4:10, 5:12] = 1
    region[1, 8:16, 0:6] = 1  # a corner: the surface extrapolates
    images[region[..., 0] > 0.5] = 0.9  # the object
    filled = metrics.smooth_fill(images, region)
    np.testing.assert_allclose(filled, background, atol=1e-4)
    outside = region[..., 0] <= 0.5
    np.testing.assert_array_equal(filled[outside], images[outside])
    # A flat fill cannot follow the surface: the smooth fill is much closer inside the object.
    flat = np.where(region > 0.5, images[outside].reshape(2, -1, 3).mean(1)[:, None, None], images)
    assert (metrics.masked_l1_psnr(filled, background, region)[1]
            > metrics.masked_l1_psnr(flat, background, region)[1] + 20)


def test_kmeans_recovers_separated_blobs():
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(3), 50)
    points = np.array([[0, 0], [10, 0], [0, 10]])[labels] + rng.normal(size=(150, 2)) * 0.5
    clusters = metrics.kmeans_labels(points, 3, seed=0)
    assert metrics.clustering_accuracy(labels, clusters) == 1.0


def test_wcis_is_one_for_a_generator_that_ignores_z():
    # Every image of a code gets the same posterior (z ignored): WCIS takes its best value, 1,
    # so WCIS says nothing about diversity within a code.
    probs = np.eye(3)[np.arange(30) % 3] * 0.7 + 0.1
    assert metrics.conditional_inception_score(probs, np.arange(30) % 3)["wcis"] == (
        pytest.approx(1.0))
    # A code whose images fall into two classes is impure: WCIS > 1 (here exp(log 2) = 2).
    mixed = metrics.conditional_inception_score(np.eye(2)[[0, 1, 0, 1]], [0, 0, 0, 0])
    assert mixed["wcis"] == pytest.approx(2.0)


# --- diversity within a code, shape accuracy, mask area -------------------------------------

def test_diversity_hand_example():
    # Code 0: (0,0), (3,4): distance 5. Code 1: (0,0), (1,0), (0,1): 1, 1, sqrt 2.
    gen = np.array([[0, 0], [3, 4], [0, 0], [1, 0], [0, 1]], np.float64)
    codes = [0, 0, 1, 1, 1]
    generated = (5 + (2 + math.sqrt(2)) / 3) / 2
    # Real class 0: (0,0), (0,2): 2. Class 1: (1,1), (1,1), (1,5): 0, 4, 4. Class 2 has one
    # image and is left out.
    real = np.array([[0, 0], [0, 2], [1, 1], [1, 1], [1, 5], [9, 9]], np.float64)
    classes = [0, 0, 1, 1, 1, 2]
    result = metrics.within_code_diversity(gen, codes, real, classes)
    assert result["generated"] == pytest.approx(generated)
    assert result["real"] == pytest.approx((2 + 8 / 3) / 2)
    assert result["diversity"] == pytest.approx(generated / (7 / 3))
    assert (result["codes"], result["real_groups"]) == (2, 2)
    # Without labels all real images form one group: the mean over all 15 pairs.
    pairs = [np.linalg.norm(real[i] - real[j]) for i in range(6) for j in range(i + 1, 6)]
    one_group = metrics.within_code_diversity(gen, codes, real)
    assert one_group["real"] == pytest.approx(np.mean(pairs)) and one_group["real_groups"] == 1


def test_diversity_is_zero_when_z_is_ignored_and_one_for_real_like_codes():
    rng = np.random.default_rng(6)
    centres = rng.normal(size=(12, 16)) * 3
    classes = np.repeat(np.arange(12), 100)
    real = centres[classes] + rng.normal(size=(1200, 16))
    codes = np.tile(np.arange(12), 100)
    # z ignored: every image of a code has the same features.
    ignored = metrics.within_code_diversity(centres[(codes * 5) % 12], codes, real, classes)
    assert ignored["diversity"] == 0.0 and ignored["generated"] == 0.0
    # Codes drawn like the real classes (in another order): diversity ~ 1.
    like_real = centres[(codes * 5) % 12] + rng.normal(size=(1200, 16))
    result = metrics.within_code_diversity(like_real, codes, real, classes)
    assert result["diversity"] == pytest.approx(1.0, abs=0.03)
    # Twice the spread of a real class: ~2.
    wider = centres[codes] + 2 * rng.normal(size=(1200, 16))
    assert metrics.within_code_diversity(wider, codes, real, classes)["diversity"] == (
        pytest.approx(2.0, abs=0.06))


def test_diversity_needs_two_images_per_group():
    with pytest.raises(ValueError, match="2 or more"):
        metrics.within_code_diversity(np.zeros((3, 2)), [0, 1, 2], np.eye(3))
    with pytest.raises(ValueError, match="do not vary"):
        metrics.within_code_diversity(np.eye(2), [0, 0], np.zeros((4, 2)))


def test_shape_accuracy_matches_code_parents_to_families():
    children = np.arange(96) % 12  # N_C = 12, N_P = 4: parent = child // 3
    parents = metrics.code_parents(children, 12, 4)
    np.testing.assert_array_equal(parents, children // 3)
    # Every parent draws its own family, under other family names: perfect.
    assert metrics.shape_accuracy(children, np.array([2, 0, 3, 1])[parents], 12, 4) == 1.0
    # Every mask the same family: 1 / N_P.
    assert metrics.shape_accuracy(children, np.full(96, 3), 12, 4) == pytest.approx(0.25)
    # Hand example, N_C = N_P = 2: parent 0 -> families 5, 5, 5, 7; parent 1 -> 7, 7, 7, 5.
    families = [5, 5, 5, 7, 7, 7, 7, 5]
    assert metrics.shape_accuracy([0, 0, 0, 0, 1, 1, 1, 1], families, 2, 2) == 0.75


def test_mask_area_statistics():
    masks = np.zeros((2, 4, 4, 1))
    masks[0] = 1.0  # area 1
    masks[1, :2, :2] = 1.0  # area 1/4
    assert metrics.mask_area(masks) == pytest.approx((0.625, 0.375))
    soft = np.full((3, 4, 4, 1), 0.5)  # soft masks count their mean, not a threshold
    result = metrics.mask_area_comparison(soft, masks)
    assert result == pytest.approx({"generated_mean": 0.5, "generated_std": 0.0,
                                    "real_mean": 0.625, "real_std": 0.375})
    # All-foreground masks, no true masks given.
    assert metrics.mask_area_comparison(np.ones((2, 4, 4, 1))) == {"generated_mean": 1.0,
                                                                   "generated_std": 0.0}


def test_pixel_precision_and_recall_tell_too_large_from_too_small():
    truth = np.zeros((2, 4, 4, 1))
    truth[:, 1:3, 1:3] = 1.0  # 4 object pixels per image
    large = np.zeros_like(truth)
    large[:, 0:4, 1:3] = 1.0  # 8 pixels, every object pixel among them
    small = np.zeros_like(truth)
    small[:, 1:2, 1:3] = 0.9  # 2 pixels, all object (soft values above the threshold)
    assert metrics.pixel_precision_recall(large, truth) == pytest.approx((0.5, 1.0))
    assert metrics.pixel_precision_recall(small, truth) == pytest.approx((1.0, 0.5))
    # Pooled over images: 2 of 4 claimed pixels in image 0, 0 of 4 in image 1 (off the object).
    shifted = np.zeros_like(truth)
    shifted[0, 0:2, 1:3] = 1.0
    shifted[1, 3:4, 0:4] = 1.0
    assert metrics.pixel_precision_recall(shifted, truth) == pytest.approx((2 / 8, 2 / 8))
    # An empty prediction claims nothing wrongly and finds nothing.
    assert metrics.pixel_precision_recall(np.zeros_like(truth), truth) == (1.0, 0.0)
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.pixel_precision_recall(truth[:1], truth)
