"""Tests for the folder format (onegan_tf/data/folder.py), from generated files."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from onegan_tf import config as config_lib
from onegan_tf.data import evaluation_batch, folder, training_dataset

RED = (230, 20, 20)


def _object_image(width, height, colour=RED):
    """Grey image with a coloured square in the middle (a third of the shorter side)."""
    image = np.full((height, width, 3), 100, np.uint8)
    side = min(width, height) // 3
    top, left = (height - side) // 2, (width - side) // 2
    image[top:top + side, left:left + side] = colour
    return image


def _write_all_modes(folder_path, size=(90, 60)):
    """One file per mode and format; returns the names of the two broken files."""
    folder_path.mkdir(parents=True)
    rgb = Image.fromarray(_object_image(*size))
    rgb.save(folder_path / "rgb.jpg", quality=95)
    rgb.convert("L").save(folder_path / "grey.png")
    rgb.convert("CMYK").save(folder_path / "cmyk.jpg")
    rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(folder_path / "palette.png")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(255)
    rgba.save(folder_path / "rgba.PNG")
    rgb.save(folder_path / "rgb.bmp")
    rgb.save(folder_path / "rgb.webp")
    (folder_path / "sub").mkdir()
    rgb.save(folder_path / "sub" / "nested.jpeg")
    (folder_path / "notes.txt").write_text("ignored")
    data = (folder_path / "rgb.jpg").read_bytes()
    (folder_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder_path / "garbage.png").write_bytes(b"not an image at all")
    return ["truncated.jpg", "garbage.png"]


def _make_dataset(root, eval_set=False):
    _write_all_modes(root / "images")
    (root / "backgrounds").mkdir()
    for i, (w, h) in enumerate([(200, 120), (64, 64), (45, 80)]):
        background = Image.fromarray(np.full((h, w, 3), 40 * i, np.uint8))
        background.save(root / "backgrounds" / f"{i}.jpg")
    if eval_set:
        images, masks = root / "eval" / "images", root / "eval" / "masks"
        images.mkdir(parents=True)
        masks.mkdir()
        for i, (w, h) in enumerate([(120, 80), (50, 50), (80, 100)]):
            image = _object_image(w, h)
            Image.fromarray(image).save(images / f"e{i}.png")
            mask = Image.fromarray(np.where(np.all(image == RED, -1), 255, 0).astype(np.uint8))
            if i == 1:
                mask = mask.resize((w * 3, h * 2), Image.Resampling.NEAREST)  # another size
            mask.save(masks / f"e{i}.png")
        Image.fromarray(_object_image(30, 30)).save(images / "unlabelled.png")
        Image.fromarray(_object_image(30, 30)).save(masks / "unlabelled.png")
        (root / "eval" / "labels.csv").write_text(
            "image,parent,child\ne0.png,0,1\ne1.png,1,3\ne2.png,1,2\nmissing.png,0,0\n")
    return root


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return _make_dataset(tmp_path_factory.mktemp("folder"), eval_set=True)


def _config(data_dir, **kw):
    return config_lib.preset("tiny", dataset="folder", data_dir=str(data_dir), **kw)


def test_every_mode_decodes_to_rgb(tmp_path):
    broken = _write_all_modes(tmp_path / "modes")
    for path in folder.list_images(tmp_path / "modes"):
        if path.name in broken:
            continue
        image = folder.load_rgb(path, 30)
        assert image.shape == (30, 30, 3) and image.dtype == np.uint8, path
        # Centre square of the 90 x 60 image, resized: the object stays in the middle.
        centre, corner = image[15, 15].astype(int), image[1, 1].astype(int)
        if path.name == "grey.png":
            assert centre[0] == centre[1] == centre[2]
        else:
            assert centre[0] > 150 and centre[1] < 90, (path.name, centre)
        assert np.all(np.abs(corner - 100) < 25), (path.name, corner)
    transparent = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    transparent.save(tmp_path / "clear.png")
    assert np.all(folder.load_rgb(tmp_path / "clear.png", 8) == 255)  # composited on white
    Image.fromarray(np.full((10, 10), 65535, np.uint16)).save(tmp_path / "deep.png")
    assert np.all(folder.load_rgb(tmp_path / "deep.png", 8) == 255)  # 16-bit scaled


def test_training_batches_skip_broken_files_with_warnings(dataset_dir):
    folder._training_arrays.cache_clear()  # decoded arrays are cached per folder
    with pytest.warns(folder.DataWarning) as record:
        objects, backgrounds = folder.training_arrays(_config(dataset_dir))
    messages = " ".join(str(w.message) for w in record)
    assert "truncated.jpg" in messages and "garbage.png" in messages
    assert objects.shape == (8, 32, 32, 3) and backgrounds.shape == (3, 40, 40, 3)
    batch = next(iter(training_dataset(_config(dataset_dir, batch_size=5))))
    assert set(batch) == {"image", "background"}
    for value in batch.values():
        assert value.shape == (5, 32, 32, 3) and value.dtype == tf.float32
        assert -1.0 <= float(tf.reduce_min(value)) <= float(tf.reduce_max(value)) <= 1.0


def test_strict_data_raises_on_a_broken_file(tmp_path):
    root = _make_dataset(tmp_path / "d")
    with pytest.raises(ValueError, match=r"(truncated\.jpg|garbage\.png).*--strict_data"):
        training_dataset(_config(root, strict_data=True))


def test_layout_errors_name_the_path_and_the_flag(tmp_path):
    with pytest.raises(ValueError, match="--data_dir"):
        training_dataset(config_lib.preset("tiny", dataset="folder"))
    with pytest.raises(FileNotFoundError, match="--data_dir=.*no such directory"):
        training_dataset(_config(tmp_path / "nowhere"))
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match="no images in .*images"):
        training_dataset(_config(tmp_path))
    Image.fromarray(_object_image(40, 40)).save(tmp_path / "images" / "a.png")
    with pytest.raises(FileNotFoundError, match="--data_dir=.*backgrounds"):
        training_dataset(_config(tmp_path))
    (tmp_path / "backgrounds").mkdir()
    (tmp_path / "backgrounds" / "bad.jpg").write_bytes(b"\xff\xd8 broken")
    with pytest.warns(folder.DataWarning, match="bad.jpg"), \
            pytest.raises(ValueError, match="no readable images in .*backgrounds"):
        training_dataset(_config(tmp_path))


def test_evaluation_set_masks_and_labels(dataset_dir):
    folder._evaluation_arrays.cache_clear()
    with pytest.warns(folder.DataWarning) as record:
        held_out = evaluation_batch(_config(dataset_dir), 10)
    messages = " ".join(str(w.message) for w in record)
    assert "missing.png" in messages  # labels.csv row naming a missing file
    assert "unlabelled.png" in messages  # image without a labels.csv row: skipped
    assert "1 mask(s)" in messages and "resized" in messages
    assert held_out["image"].shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(held_out["parent"].numpy(), [0, 1, 1])
    np.testing.assert_array_equal(held_out["child"].numpy(), [1, 3, 2])
    masks = held_out["mask"].numpy()[..., 0]
    assert set(np.unique(masks)) <= {0.0, 1.0}
    red = (held_out["image"].numpy()[..., 0] > 0.5) & (held_out["image"].numpy()[..., 1] < 0)
    iou = (masks.astype(bool) & red).sum((1, 2)) / (masks.astype(bool) | red).sum((1, 2))
    assert np.all(iou > 0.8), iou  # also for e1, whose mask had another size
    assert evaluation_batch(_config(dataset_dir), 2)["image"].shape[0] == 2


def test_evaluation_without_eval_folder_gives_images_only(tmp_path):
    root = _make_dataset(tmp_path / "d")
    with pytest.warns(folder.DataWarning):
        held_out = evaluation_batch(_config(root), 4)
    assert set(held_out) == {"image"} and held_out["image"].shape == (4, 32, 32, 3)


def test_short_training_run_on_a_folder(dataset_dir, tmp_path):
    from onegan_tf.training import loop

    cfg = _config(dataset_dir, run_dir=str(tmp_path / "run"), total_steps=3)
    with open(tmp_path / "log.txt", "w") as log:
        model = loop.train(cfg, stream=log)
    assert int(model.step.numpy()) == 3
    assert "done: 3 steps" in (tmp_path / "log.txt").read_text()
