"""The evaluation command and the evaluator networks (onegan_tf/evaluate.py, networks.py)."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from onegan_tf import config as config_lib
from onegan_tf import data
from onegan_tf.evaluate import evaluate_run
from onegan_tf.evaluation import metrics, networks, report
from onegan_tf.training import loop

EVALUATOR_STEPS = 400  # enough for the small CNN to pass its 0.9 accuracy gate at 32 px
SHAPE_CLASSIFIER_STEPS = 500  # ~0.99 held-out accuracy at 32 px (0.985 after 300 steps)


@pytest.fixture(scope="module")
def evaluator_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("evaluator_cache")
    logs = []
    judge = networks.shapes_evaluator(32, cache, steps=EVALUATOR_STEPS, log=logs.append)
    return cache, judge, logs


@pytest.fixture(scope="module")
def shape_classifier(evaluator_cache):
    """The mask classifier, trained with a small budget into the evaluator cache (so that the
    evaluation runs below load it)."""
    cache, _, _ = evaluator_cache
    logs = []
    classifier = networks.shape_classifier(32, cache_dir=cache, steps=SHAPE_CLASSIFIER_STEPS,
                                            log=logs.append)
    return classifier, logs


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    cfg = config_lib.preset("tiny", run_dir=str(run_dir), total_steps=4, phase1_steps=100,
                            fake_recon_start=100, real_recon_start=100)
    with open(run_dir / "train.log", "w") as log:
        loop.train(cfg, stream=log)
    return run_dir


def test_shapes_evaluator_is_accurate_and_cached(evaluator_cache):
    cache, judge, logs = evaluator_cache
    assert judge.info["accuracy"] >= 0.9
    assert any("training the shapes evaluator" in line for line in logs)
    cached = list(cache.glob("shapes-evaluator-*.weights.h5"))
    assert len(cached) == 1 and not list(cache.glob(".*tmp*"))
    # The second call loads the cache (no training) and gives the same outputs.
    logs2 = []
    again = networks.shapes_evaluator(32, cache, steps=EVALUATOR_STEPS, log=logs2.append)
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


def test_evaluate_run_writes_every_section(shapes_run, evaluator_cache, shape_classifier):
    cache, _, _ = evaluator_cache
    logs = []
    results = evaluate_run(shapes_run, examples=96, generated=96,
                           evaluator_cache=str(cache), log=logs.append)
    on_disk = json.loads((shapes_run / "metrics.json").read_text())
    table = (shapes_run / "metrics.md").read_text()
    assert on_disk["step"] == 4 and on_disk["examples"] == 96
    for key in ("segmentation", "clustering_parent", "clustering_parent_tree",
                "clustering_child", "reconstruction", "object_removal", "generation"):
        assert key in on_disk, key
    assert not any("training" in line for line in logs)  # both networks came from the cache
    seg = on_disk["segmentation"]
    assert 0 <= seg["iou"] <= seg["dice"] <= 1
    # All-foreground IoU of an image is its object's area fraction.
    truth = data.evaluation_batch(config_lib.preset("tiny"), 96)["mask"].numpy()
    assert seg["baselines"]["all_foreground"]["iou"] == pytest.approx(truth.mean(), rel=1e-6)
    # The parent from E_p's head and from the tree of E_c's child, with the same baselines.
    head, tree = on_disk["clustering_parent"], on_disk["clustering_parent_tree"]
    assert head["label"] == "parent (E_p head)"
    assert tree["label"] == "parent (tree of E_c's child)"
    assert head["baselines"] == tree["baselines"]
    for section in (head, tree, on_disk["clustering_child"]):
        assert 0 <= section["acc"] <= 1 and 0 <= section["nmi"] <= 1
    gen = on_disk["generation"]
    assert gen["fid"] > 0 and gen["is"] >= 1 and gen["cis"] >= 1
    assert gen["is"] == pytest.approx(gen["cis"] * gen["wcis"], rel=1e-6)
    # After 4 steps the evaluator may put every generated image in one class; CFID then needs
    # two matched classes and is skipped with the reason (its values: test_metrics).
    if "cfid_skipped" in gen:
        assert "needs >= 2 classes" in gen["cfid_skipped"] and "cfid" not in gen
    else:
        assert gen["cfid"] > 0 and 2 <= gen["cfid_classes"] <= 12
    assert gen["diversity"] == pytest.approx(gen["diversity_generated"]
                                             / gen["diversity_real"])
    assert gen["diversity"] >= 0 and gen["diversity_real"] > 0
    assert gen["diversity_real_grouping"] == "true child class (12 classes)"
    assert 0 < gen["shape_accuracy"] <= 1 and 1 <= gen["shape_families_seen"] <= 4
    area, ref = gen["mask_area"], gen["real_data"]
    assert 0 <= area["generated_mean"] <= 1 and 0 <= area["generated_std"] <= 0.5
    per_image = truth.reshape(96, -1).mean(1)
    assert area["real_mean"] == pytest.approx(per_image.mean(), rel=1e-6)
    assert area["real_std"] == pytest.approx(per_image.std(), rel=1e-5)
    assert ref["shape_accuracy"] >= 0.9  # the classifier on the true masks
    removal = on_disk["object_removal"]
    assert removal["baselines"]["object_left_in"]["l1"] > 0.1
    assert "| segmentation | IOU |" in table and "| generation | FID ↓ |" in table
    for text in ("| clustering: parent (E_p head) | ACC |",
                 "| clustering: parent (tree of E_c's child) | NMI |",
                 "| generation | WCIS (purity of a code's class; best 1) |",
                 "| generation | diversity within a code ↑ (generated / real) |",
                 "| real data 1.000 |", "| generation | shape accuracy of masks ↑ |",
                 "| generation | mask area (mean ± std) |",
                 "real groups: true child class (12 classes)"):
        assert text in table, text
    assert table in "\n".join(logs)
    assert results["segmentation"] == on_disk["segmentation"]
    from PIL import Image
    for name in ("generation", "reconstruction", "conditional_generation", "translation"):
        figure = Image.open(shapes_run / "figures" / f"{name}.png")
        assert figure.mode == "RGB" and min(figure.size) > 32, name


def test_evaluate_matches_known_answers_on_ground_truth():
    """A fake 'model' output equal to the ground truth scores perfectly: feed the truth in."""
    truth = np.zeros((4, 8, 8, 1), np.float32)
    truth[:, 2:6, 2:6] = 1
    seg = report._segmentation(truth, truth)
    assert seg["iou"] == 1.0 and seg["dice"] == 1.0
    assert seg["baselines"]["all_foreground"]["iou"] == pytest.approx(16 / 64)
    images = np.random.default_rng(1).uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)
    clean = images.copy()
    removal = report._object_removal(clean, images, clean, truth)
    assert removal["l1"] == 0.0 and removal["baselines"]["object_left_in"]["l1"] == 0.0


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
    expected = {"eval/iou", "eval/dice", "eval/gen_mask_area", "eval/gen_mask_area_real"} | {
        f"eval/{name}_{metric}" for name in ("parent", "parent_tree", "child")
        for metric in ("acc", "nmi")}
    assert set(results) == expected
    assert all(0 <= v <= 1 for v in results.values())
    masks = report.generate_in_batches(tiny_model.ema, 24, report.QUICK_SEED)["mask"]
    assert results["eval/gen_mask_area"] == pytest.approx(masks.mean(), rel=1e-5)
    assert results["eval/gen_mask_area_real"] == pytest.approx(examples["mask"].mean())
    # The parent from E_p's head, and from the tree of E_c's child.
    out = report.infer_in_batches(tiny_model.ema, examples["image"])
    assert results["eval/parent_acc"] == metrics.clustering_accuracy(examples["parent"],
                                                                     out["shape_parent"])
    assert results["eval/parent_tree_acc"] == metrics.clustering_accuracy(examples["parent"],
                                                                          out["parent"])


def test_cli_evaluates_and_reports_errors(shapes_run, evaluator_cache, subprocess_env,
                                          repo_root, tmp_path):
    cache, _, _ = evaluator_cache
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "onegan_tf.evaluate", *args], cwd=repo_root,
        env=subprocess_env, capture_output=True, text=True, timeout=300)
    done = run(f"--run_dir={shapes_run}", "--examples=32", f"--evaluator_cache={cache}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| clustering: child (E_c) | NMI |" in done.stdout
    missing = run(f"--run_dir={tmp_path}")
    assert missing.returncode == 2 and "no config.json" in missing.stderr
    assert run().returncode == 2
    few = run(f"--run_dir={shapes_run}", "--examples=3")
    assert few.returncode == 2 and "--examples=3" in few.stderr


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


def _write_labelled_folder(root):
    """A folder dataset whose eval/ split has masks and two labelled classes (red / blue)."""
    from PIL import Image

    rng = np.random.default_rng(3)
    for sub in ("images", "backgrounds", "eval/images", "eval/masks"):
        (root / sub).mkdir(parents=True)
    rows = ["image,parent,child"]
    for i in range(12):
        colour = (220, 30, 30) if i % 2 else (30, 30, 220)
        image = np.full((48, 40, 3), rng.integers(60, 140), np.uint8)
        mask = np.zeros((48, 40), np.uint8)
        mask[14:34, 10:30] = 255
        image[mask > 0] = colour
        Image.fromarray(image).save(root / "images" / f"{i}.jpg")
        Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(root / "backgrounds" / f"{i}.jpg")
        Image.fromarray(image).save(root / "eval" / "images" / f"e{i}.png")
        Image.fromarray(mask).save(root / "eval" / "masks" / f"e{i}.png")
        rows.append(f"e{i}.png,0,{i % 2}")
    (root / "eval" / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_finetune_and_evaluate_on_a_folder(tmp_path):
    root = _write_labelled_folder(tmp_path / "data")
    cfg = config_lib.preset("tiny", dataset="folder", data_dir=str(root),
                            run_dir=str(tmp_path / "run"), total_steps=2, phase1_steps=100,
                            fake_recon_start=100, real_recon_start=100)
    with open(tmp_path / "train.log", "w") as log:
        loop.train(cfg, stream=log)
    logs = []
    path = networks.finetune(cfg, None, tmp_path / "folder_inception.keras", steps=2,
                              batch_size=4, image_size=75, log=logs.append)
    assert path.exists() and "2 classes" in logs[0]
    with pytest.raises(ValueError, match=r"\.keras"):
        networks.finetune(cfg, None, tmp_path / "x.h5", steps=1)

    # Without an evaluator, its generation metrics are skipped with a message naming the flag;
    # the generated masks' area is still compared with the true objects'.
    plain = evaluate_run(cfg.run_dir, examples=16, log=logs.append)
    assert any("--evaluator_weights" in s for s in plain["skipped"])
    assert {"fid", "diversity", "shape_accuracy"}.isdisjoint(plain["generation"])
    assert set(plain["generation"]["mask_area"]) == {"generated_mean", "generated_std",
                                                     "real_mean", "real_std"}
    assert plain["segmentation"]["iou"] >= 0 and "clustering_child" in plain
    assert "object_removal" not in plain

    results = evaluate_run(cfg.run_dir, examples=16, evaluator_weights=str(path),
                           log=logs.append)
    gen = results["generation"]
    assert gen["evaluator"] == "inception-finetuned" and gen["fid"] >= 0
    # 12 held-out images -> 12 generated, one per code: no code has two images to compare.
    assert gen["diversity_skipped"] == "no group has 2 or more members"
    assert "Skipped: diversity: no group" in (tmp_path / "run" / "metrics.md").read_text()
    assert "cfid" in gen or "cfid_skipped" in gen
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["generation"]
