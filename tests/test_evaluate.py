"""The evaluation command and the evaluator networks (onegan_tf/evaluate.py, evaluator.py)."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from onegan_tf import config as config_lib
from onegan_tf import data, evaluation, evaluator, train_lib
from onegan_tf.evaluate import evaluate_run

EVALUATOR_STEPS = 400  # enough for the small CNN to pass its 0.9 accuracy gate at 32 px


@pytest.fixture(scope="module")
def evaluator_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("evaluator_cache")
    logs = []
    judge = evaluator.shapes_evaluator(32, cache, steps=EVALUATOR_STEPS, log=logs.append)
    return cache, judge, logs


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    cfg = config_lib.preset("tiny", run_dir=str(run_dir), total_steps=4, phase1_steps=100,
                            fake_recon_start=100, real_recon_start=100)
    with open(run_dir / "train.log", "w") as log:
        train_lib.train(cfg, stream=log)
    return run_dir


def test_shapes_evaluator_is_accurate_and_cached(evaluator_cache):
    cache, judge, logs = evaluator_cache
    assert judge.info["accuracy"] >= 0.9
    assert any("training the shapes evaluator" in line for line in logs)
    cached = list(cache.glob("shapes-evaluator-*.weights.h5"))
    assert len(cached) == 1 and not list(cache.glob(".*tmp*"))
    # The second call loads the cache (no training) and gives the same outputs.
    logs2 = []
    again = evaluator.shapes_evaluator(32, cache, steps=EVALUATOR_STEPS, log=logs2.append)
    assert logs2 == []
    images = np.random.default_rng(0).uniform(-1, 1, (5, 32, 32, 3)).astype(np.float32)
    f1, p1 = judge(images)
    f2, p2 = again(images)
    assert f1.shape == (5, 128) and p1.shape == (5, evaluator.SHAPES_CLASSES)
    np.testing.assert_allclose(p1, p2, atol=1e-5)
    np.testing.assert_allclose(p1.sum(1), 1.0, atol=1e-5)
    # Inputs of another size are resized, not refused.
    assert judge(np.zeros((2, 48, 48, 3), np.float32))[1].shape == (2, 12)
    with pytest.raises(ValueError, match=r"images \[N, H, W, 3\]"):
        judge(np.zeros((2, 32, 32), np.float32))


def test_damaged_cache_is_retrained_and_a_weak_evaluator_refused(evaluator_cache, tmp_path):
    cache, _, _ = evaluator_cache
    damaged = tmp_path / next(cache.glob("*.weights.h5")).name
    damaged.write_bytes(b"broken")
    logs = []
    # Retraining starts; 3 steps cannot reach the accuracy gate, so nothing is cached.
    with pytest.raises(RuntimeError, match="held-out accuracy"):
        evaluator.shapes_evaluator(32, tmp_path, steps=3, log=logs.append)
    assert "cannot read cached evaluator" in logs[0] and "training" in logs[1]
    assert damaged.read_bytes() == b"broken" and not list(tmp_path.glob(".*tmp*"))


def test_evaluate_run_writes_every_section(shapes_run, evaluator_cache):
    cache, _, _ = evaluator_cache
    logs = []
    results = evaluate_run(shapes_run, examples=96, generated=96,
                           evaluator_cache=str(cache), log=logs.append)
    on_disk = json.loads((shapes_run / "metrics.json").read_text())
    table = (shapes_run / "metrics.md").read_text()
    assert on_disk["step"] == 4 and on_disk["examples"] == 96
    for key in ("segmentation", "clustering_parent", "clustering_child", "reconstruction",
                "object_removal", "generation"):
        assert key in on_disk, key
    seg = on_disk["segmentation"]
    assert 0 <= seg["iou"] <= seg["dice"] <= 1
    # All-foreground IoU of an image is its object's area fraction.
    truth = data.evaluation_batch(config_lib.preset("tiny"), 96)["mask"].numpy()
    assert seg["baselines"]["all_foreground"]["iou"] == pytest.approx(truth.mean(), rel=1e-6)
    gen = on_disk["generation"]
    assert gen["fid"] > 0 and gen["is"] >= 1 and gen["cis"] >= 1 and gen["cfid"] > 0
    assert gen["is"] == pytest.approx(gen["cis"] * gen["wcis"], rel=1e-6)
    assert 2 <= gen["cfid_classes"] <= 12  # the bound itself: test_metrics
    removal = on_disk["object_removal"]
    assert removal["baselines"]["object_left_in"]["l1"] > 0.1
    assert "| segmentation | IOU |" in table and "| generation | FID ↓ |" in table
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
    seg = evaluation._segmentation(truth, truth)
    assert seg["iou"] == 1.0 and seg["dice"] == 1.0
    assert seg["baselines"]["all_foreground"]["iou"] == pytest.approx(16 / 64)
    images = np.random.default_rng(1).uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)
    clean = images.copy()
    removal = evaluation._object_removal(clean, images, clean, truth)
    assert removal["l1"] == 0.0 and removal["baselines"]["object_left_in"]["l1"] == 0.0


def test_cli_evaluates_and_reports_errors(shapes_run, evaluator_cache, subprocess_env,
                                          repo_root, tmp_path):
    cache, _, _ = evaluator_cache
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "onegan_tf.evaluate", *args], cwd=repo_root,
        env=subprocess_env, capture_output=True, text=True, timeout=300)
    done = run(f"--run_dir={shapes_run}", "--examples=32", f"--evaluator_cache={cache}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| clustering (child) | NMI |" in done.stdout
    missing = run(f"--run_dir={tmp_path}")
    assert missing.returncode == 2 and "no config.json" in missing.stderr
    assert run().returncode == 2
    few = run(f"--run_dir={shapes_run}", "--examples=3")
    assert few.returncode == 2 and "--examples=3" in few.stderr


def test_inception_evaluators_from_local_files(tmp_path):
    model = evaluator.inception_classifier(3, image_size=75)
    model.save(str(tmp_path / "fine.keras"))
    judge = evaluator.load_evaluator(tmp_path / "fine.keras")
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
        evaluator.load_evaluator(tmp_path / "notop.weights.h5")
    with pytest.raises(FileNotFoundError, match="--evaluator_weights"):
        evaluator.load_evaluator(tmp_path / "absent.keras")
    with pytest.raises(ValueError, match="at least 75 px"):
        evaluator.inception_classifier(3, image_size=32)


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
        train_lib.train(cfg, stream=log)
    logs = []
    path = evaluator.finetune(cfg, None, tmp_path / "folder_inception.keras", steps=2,
                              batch_size=4, image_size=75, log=logs.append)
    assert path.exists() and "2 classes" in logs[0]
    with pytest.raises(ValueError, match=r"\.keras"):
        evaluator.finetune(cfg, None, tmp_path / "x.h5", steps=1)

    # Without an evaluator, generation metrics are skipped with a message naming the flag.
    plain = evaluate_run(cfg.run_dir, examples=16, log=logs.append)
    assert "generation" not in plain and any("--evaluator_weights" in s for s in plain["skipped"])
    assert plain["segmentation"]["iou"] >= 0 and "clustering_child" in plain
    assert "object_removal" not in plain

    results = evaluate_run(cfg.run_dir, examples=16, evaluator_weights=str(path),
                           log=logs.append)
    gen = results["generation"]
    assert gen["evaluator"] == "inception-finetuned" and gen["fid"] >= 0
    assert "cfid" in gen or "cfid_skipped" in gen
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["generation"]
