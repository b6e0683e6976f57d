"""The evaluation command (onegan_tf/evaluate.py): `evaluate_run` writes every section of the
report for a short shapes run and for a folder dataset with a fine-tuned evaluator, and
`python -m onegan_tf.evaluate` reports its errors. The evaluator networks come from the
session's cache (conftest.py); their own tests: tests/evaluation/test_networks.py."""

import json
import subprocess
import sys

import numpy as np
import pytest

from onegan_tf import config as config_lib
from onegan_tf import data
from onegan_tf.evaluate import evaluate_run
from onegan_tf.evaluation import networks
from onegan_tf.training import loop


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    cfg = config_lib.preset("tiny", run_dir=str(run_dir), total_steps=4, phase1_steps=100,
                            fake_recon_start=100, real_recon_start=100)
    with open(run_dir / "train.log", "w") as log:
        loop.train(cfg, stream=log)
    return run_dir


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
    # The shapes backgrounds are smooth gradients under fine ripples: a quadratic surface
    # completes them better than a flat fill.
    assert (removal["baselines"]["smooth_fill"]["psnr"]
            > removal["baselines"]["mean_colour_fill"]["psnr"])
    assert 0 < removal["visible_psnr"] < 100
    assert "| segmentation | IOU |" in table and "| generation | FID ↓ |" in table
    for text in ("| clustering: parent (E_p head) | ACC |",
                 "| clustering: parent (tree of E_c's child) | NMI |",
                 "| generation | WCIS (purity of a code's class; best 1) |",
                 "| generation | diversity within a code ↑ (generated / real) |",
                 "| real data 1.000 |", "| generation | shape accuracy of masks ↑ |",
                 "| generation | mask area (mean ± std) |",
                 "| object removal | PSNR of the visible background (dB) |",
                 "real groups: true child class (12 classes)"):
        assert text in table, text
    assert table in "\n".join(logs)
    assert results["segmentation"] == on_disk["segmentation"]
    from PIL import Image
    for name in ("generation", "reconstruction", "conditional_generation", "translation"):
        figure = Image.open(shapes_run / "figures" / f"{name}.png")
        assert figure.mode == "RGB" and min(figure.size) > 32, name


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
                           fid_samples=12, log=logs.append)
    gen = results["generation"]
    assert gen["evaluator"] == "inception-finetuned" and gen["fid"] >= 0
    # InceptionV3: the reference protocol, --fid_samples generated images against as many
    # training objects.
    assert gen["generated"] == 12 and "12 training objects" in gen["fid_protocol"]
    # 12 generated, one per code: no code has two images to compare.
    assert gen["diversity_skipped"] == "no group has 2 or more members"
    assert "Skipped: diversity: no group" in (tmp_path / "run" / "metrics.md").read_text()
    assert "cfid" in gen or "cfid_skipped" in gen
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["generation"]
