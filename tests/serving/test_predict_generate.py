"""`predict --task=generate`: N generated PNGs per code, written for folder-based FID tools."""

import csv
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from onegan_tf.serving import image_files, inference, signatures


def test_generate_images_writes_count_per_code(served, tiny_autoencoder, tiny_config, tmp_path):
    result = image_files.generate_images(served, tmp_path, count=2, seed=10, progress=False,
                                         log=lambda m: None)
    children, size = tiny_config.num_children, tiny_config.image_size
    assert result["count"] == 2 * children
    rows = list(csv.DictReader(open(tmp_path / "generated.csv")))
    assert [(int(r["child"]), int(r["seed"])) for r in rows] == [
        (c, s) for c in range(children) for s in (10, 11)]
    assert all(int(r["parent"]) == int(r["child"]) * tiny_config.num_parents // children
               for r in rows)
    # Each file is the 8-bit image of the in-memory model for that (child, seed).
    child = np.array([int(r["child"]) for r in rows], np.int32)
    seed = np.array([int(r["seed"]) for r in rows], np.int32)
    expected = inference.generate(tiny_autoencoder, child,
                                  signatures.seeded_z(seed, tiny_config.z_dim))["image"]
    expected = np.uint8(np.clip(expected.numpy() * 127.5 + 127.5, 0, 255) + 0.5)
    for row, want in zip(rows, expected):
        image = Image.open(tmp_path / row["file"])
        assert image.mode == "RGB" and image.size == (size, size)
        assert np.abs(np.asarray(image, np.int16) - want).max() <= 1, row["file"]
    # Different seeds give different images (z reaches the output of an untrained model too).
    first, second = (np.asarray(Image.open(tmp_path / rows[i]["file"])) for i in (0, 1))
    assert np.any(first != second)


def test_generate_rejects_bad_codes_before_writing(served, tmp_path):
    with pytest.raises(ValueError, match=r"--child_id=99: the model has children 0\.\.\d+"):
        image_files.generate_images(served, tmp_path / "out", count=1, child_ids=[99])
    with pytest.raises(ValueError, match="--count=0"):
        image_files.generate_images(served, tmp_path / "out", count=0)
    assert not (tmp_path / "out").exists()


def test_generate_command(tiny_export, tmp_path, subprocess_env):
    done = subprocess.run(
        [sys.executable, "-m", "onegan_tf.predict", f"--model={tiny_export}", "--task=generate",
         "--count=3", "--child_id=1", f"--output={tmp_path}/a"],
        capture_output=True, text=True, env=subprocess_env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "child1_0.png", "child1_1.png", "child1_2.png", "generated.csv"]
    assert "generated 3 images" in done.stdout
