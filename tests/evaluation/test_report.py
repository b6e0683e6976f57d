"""Tests for onegan_tf/evaluation/report.py: its sections on known answers (ground truth fed in
as the model's output, a hand-made shape classifier, labelled and unlabelled real images) and the
quick metrics logged during training. (The whole report of a run: tests/test_evaluate.py.)"""

import numpy as np
import pytest

from onegan_tf import config as config_lib
from onegan_tf import data
from onegan_tf.evaluation import metrics, report


def test_evaluate_matches_known_answers_on_ground_truth():
    """A fake 'model' output equal to the ground truth scores perfectly: feed the truth in."""
    truth = np.zeros((4, 8, 8, 1), np.float32)
    truth[:, 2:6, 2:6] = 1
    seg = report._segmentation(truth, truth)
    assert seg["iou"] == 1.0 and seg["dice"] == 1.0
    assert seg["baselines"]["all_foreground"]["iou"] == pytest.approx(16 / 64)
    assert seg["precision"] == 1.0 and seg["recall"] == 1.0
    # All foreground finds every object pixel; a quarter of what it claims is object.
    assert seg["baselines"]["all_foreground"]["precision"] == pytest.approx(16 / 64)
    assert seg["baselines"]["all_foreground"]["recall"] == 1.0
    assert seg["mask_area"] == pytest.approx({"predicted_mean": 0.25, "predicted_std": 0.0,
                                              "true_mean": 0.25, "true_std": 0.0})
    half = np.where(np.arange(8)[None, None, :, None] < 4, truth, 0.0)  # the object's left half
    seg = report._segmentation(half, truth)
    assert (seg["precision"], seg["recall"]) == (1.0, 0.5)
    assert seg["mask_area"]["predicted_mean"] == pytest.approx(8 / 64)
    table = report.markdown_table({"examples": 4, "segmentation": seg,
                                   "reconstruction": {"l1": 0.0}})
    assert "| segmentation | pixel recall | 0.500 |" in table
    assert "| segmentation | predicted mask area (mean ± std) | 0.125 ± 0.000 | true masks 0.250" \
        in table
    images = np.random.default_rng(1).uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)
    clean = images.copy()
    removal = report._object_removal(clean, images, clean, truth)
    assert removal["l1"] == 0.0 and removal["baselines"]["object_left_in"]["l1"] == 0.0
    assert removal["visible_psnr"] == pytest.approx(100.0)  # exact: the 1e-10 MSE floor
    # A background path that gets the visible background wrong by 0.1 (0-1 scale): 20 dB.
    off = np.where(truth > 0.5, clean, clean + 0.2)
    assert report._object_removal(off, images, clean, truth)["visible_psnr"] == pytest.approx(
        20.0)
    assert set(removal["baselines"]) == {"object_left_in", "mean_colour_fill", "smooth_fill"}


class _AreaClassifier:
    """A hand-made shape classifier: the family is the mask's area in quarters."""

    def __call__(self, masks):
        return np.minimum((np.asarray(masks).mean((1, 2, 3)) * 4).astype(int), 3)


def test_shape_accuracy_section_with_a_hand_made_classifier():
    config = config_lib.preset("tiny", num_children=6, num_parents=2)
    children = np.arange(12) % 6  # parents 0, 0, 0, 1, 1, 1
    masks = np.zeros((12, 8, 8, 1), np.float32)
    masks[children >= 3] = 1.0  # parent 1 all foreground (family 3), parent 0 empty (0)
    real = {"mask": masks[:4], "parent": np.array([0, 0, 3, 3])}
    out, ref = report._shape_accuracy(_AreaClassifier(), {"mask": masks, "child": children},
                                          real, config)
    assert out == {"shape_accuracy": 1.0, "shape_families_seen": 2}
    assert ref == {"shape_accuracy": 0.75}  # the third real mask is empty: family 0, not 3
    out, _ = report._shape_accuracy(_AreaClassifier(), {"mask": np.ones_like(masks),
                                                            "child": children}, {}, config)
    assert out == {"shape_accuracy": 0.5, "shape_families_seen": 1}  # one family: 1 / N_P


def test_diversity_section_says_how_real_images_were_grouped():
    rng = np.random.default_rng(7)
    gen, real = rng.normal(size=(24, 4)), rng.normal(size=(30, 4))
    codes = np.arange(24) % 6
    labelled = report._diversity(gen, codes, real, np.arange(30) % 3)
    assert labelled["diversity_real_grouping"] == "true child class (3 classes)"
    unlabelled = report._diversity(gen, codes, real, None)
    assert unlabelled["diversity_real_grouping"] == (
        "all real images as one group (no class labels)")
    assert unlabelled["diversity"] == pytest.approx(1.0, abs=0.3)  # same distribution
    assert report._diversity(gen, codes, real[:1], None) == {
        "diversity_skipped": "no group has 2 or more members"}


def test_quick_metrics_keys(tiny_model, tiny_config):
    examples = {k: v.numpy() for k, v in data.evaluation_batch(tiny_config, 24).items()}
    results = report.quick_metrics(tiny_model.ema, examples, generated=24)
    expected = {"eval/iou", "eval/dice", "eval/precision", "eval/recall", "eval/mask_area",
                "eval/gen_mask_area", "eval/gen_mask_area_real"} | {
        f"eval/{name}_{metric}" for name in ("parent", "parent_tree", "child")
        for metric in ("acc", "nmi")}
    assert set(results) == expected
    assert all(0 <= v <= 1 for v in results.values())
    masks = report.generate_in_batches(tiny_model.ema, 24, report.QUICK_SEED)["mask"]
    assert results["eval/gen_mask_area"] == pytest.approx(masks.mean(), rel=1e-5)
    assert results["eval/gen_mask_area_real"] == pytest.approx(examples["mask"].mean())
    # The parent from E_p's head, and from the tree of E_c's child.
    out = report.infer_in_batches(tiny_model.ema, examples["image"])
    assert results["eval/mask_area"] == pytest.approx(out["mask"].mean(), rel=1e-5)
    assert (results["eval/precision"], results["eval/recall"]) == pytest.approx(
        metrics.pixel_precision_recall(out["mask"], examples["mask"]))
    assert results["eval/parent_acc"] == metrics.clustering_accuracy(examples["parent"],
                                                                     out["shape_parent"])
    assert results["eval/parent_tree_acc"] == metrics.clustering_accuracy(examples["parent"],
                                                                          out["parent"])
