"""Tests for the CUB / Dogs / Cars TFDS pipelines (onegan_tf/data/tfds_data.py).

No downloads: `tfds.testing.mock_data` with an `as_dataset_fn` that yields hand-made examples.
(TFDS's own random mock examples cannot be used for these builders: their random bboxes have
min > max and TFDS's BBoxFeature refuses to encode them.) The hand-made ones keep what matters
from real data: random image sizes, a CUB mask of another size than its image, bboxes with
min > max or outside [0, 1], several boxes per Dogs image, Cars ids repeated across splits.
Each image is flat grey with the object box painted red (Dogs: a second, smaller box blue).
"""

import zlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from onegan_tf import config as config_lib
from onegan_tf.data import evaluation_batch, tfds_data, training_dataset

GREY, RED, BLUE = (90, 90, 90), (250, 0, 0), (0, 0, 250)
NUM_EXAMPLES = 60  # per split; two splits -> ~24 background images, ~84 object images


def _paint(image, box, colour):
    h, w = image.shape[:2]
    y0, y1 = sorted((box[0], box[2]))
    x0, x1 = sorted((box[1], box[3]))
    eps = 1e-3  # as images.normalized_box_to_pixels
    y0, y1 = int(np.floor(max(y0, 0) * h + eps)), int(np.ceil(min(y1, 1) * h - eps))
    x0, x1 = int(np.floor(max(x0, 0) * w + eps)), int(np.ceil(min(x1, 1) * w - eps))
    image[y0:y1, x0:x1] = colour


def _example(name, split, i, rng):
    h, w = (int(v) for v in rng.integers(48, 160, 2))
    size = rng.uniform(0.2, 0.5, 2)
    corner = rng.uniform(0.0, 1.0 - size)
    box = np.array([corner[0], corner[1], corner[0] + size[0], corner[1] + size[1]], np.float32)
    if i % 3 == 0:
        box = box[[2, 1, 0, 3]]  # ymin > ymax, as in TFDS mock data
    if i % 5 == 0:
        box[3] += 0.3  # beyond the image: clipped
    image = np.full((h, w, 3), GREY, np.uint8)
    _paint(image, box, RED)
    ex = {"image": tf.io.encode_png(image).numpy(), "label": i % 7}
    if name == "cars196":
        ex.update(id=f"{i:05d}", bbox=box)  # the same ids in both splits, as in Cars
        return ex
    ex["image/filename"] = f"{i % 7:03d}.class/img_{split}_{i}.jpg"
    if name == "caltech_birds2011":
        mh, mw = h // 2 + 3, (w * 2) // 3  # CUB masks need not match their image's size
        mask = np.zeros((mh, mw, 3), np.uint8)
        _paint(mask, box, (255, 255, 255))
        ex.update(bbox=box, segmentation_mask=tf.io.encode_png(mask[..., :1]).numpy())
    else:
        small = np.array([0.0, 0.0, 0.1, 0.1], np.float32)  # second, smaller dog in a corner
        _paint(image, small, BLUE)
        ex.update(image=tf.io.encode_png(image).numpy(), objects={"bbox": np.stack([small, box])})
    return ex


def _fake_as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    assert decoders and "image" in decoders  # the pipeline decodes images itself
    rng = np.random.default_rng(zlib.crc32(str(split).encode()))
    examples = [_example(self.name, str(split), i, rng) for i in range(NUM_EXAMPLES)]
    spec = {"image": tf.TensorSpec([], tf.string), "label": tf.TensorSpec([], tf.int64),
            "id": tf.TensorSpec([], tf.string), "image/filename": tf.TensorSpec([], tf.string),
            "bbox": tf.TensorSpec([4], tf.float32),
            "segmentation_mask": tf.TensorSpec([], tf.string),
            "objects": {"bbox": tf.TensorSpec([None, 4], tf.float32)}}
    spec = {k: v for k, v in spec.items() if k in examples[0]}
    return tf.data.Dataset.from_generator(lambda: iter(examples), output_signature=spec)


@pytest.fixture
def mock_tfds(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with tfds.testing.mock_data(as_dataset_fn=_fake_as_dataset, data_dir=str(tmp_path)):
        yield str(tmp_path)


def _config(dataset, data_dir, **kw):
    return config_lib.preset("tiny", dataset=dataset, data_dir=data_dir, **kw)


def _colour_fraction(crops, colour, tol=40):
    """Fraction of pixels within `tol` of `colour`, per uint8 crop [N, S, S, 3]."""
    close = np.all(np.abs(crops.astype(int) - np.array(colour)) < tol, axis=-1)
    return close.mean(axis=(1, 2))


@pytest.mark.parametrize("dataset", ["cub", "dogs", "cars"])
def test_training_batches_and_evaluation(mock_tfds, dataset):
    cfg = _config(dataset, mock_tfds, batch_size=5)
    batch = next(iter(training_dataset(cfg)))
    assert set(batch) == {"image", "background"}
    for value in batch.values():
        assert value.shape == (5, 32, 32, 3) and value.dtype == tf.float32
        assert -1.0 <= float(tf.reduce_min(value)) <= float(tf.reduce_max(value)) <= 1.0
    held_out = evaluation_batch(cfg, 6)
    assert held_out["image"].shape == (6, 32, 32, 3)
    assert held_out["child"].dtype == tf.int32
    assert ("mask" in held_out) == (dataset == "cub")


@pytest.mark.parametrize("dataset", ["cub", "dogs", "cars"])
def test_streams_are_disjoint_and_clean(mock_tfds, dataset):
    cfg = _config(dataset, mock_tfds)
    streams = {}
    for name in ("objects", "eval"):
        examples = list(tfds_data.object_examples(cfg, name).as_numpy_iterator())
        streams[name] = {ex["id"] for ex in examples}
        crops = np.stack([ex["image"] for ex in examples])
        # The crop follows the (largest) box: red is always there, and dominates blue.
        assert _colour_fraction(crops, RED).min() > 0.05
        assert np.all(_colour_fraction(crops, RED) > _colour_fraction(crops, BLUE))
    patches = list(tfds_data.background_examples(cfg).as_numpy_iterator())
    streams["backgrounds"] = {ex["id"] for ex in patches}
    assert len(patches) > 0
    # Background patches never touch a box: flat grey only.
    assert np.all(np.abs(np.stack([p["image"] for p in patches]).astype(int) - GREY) <= 1)
    # No image in two streams; the split is the hash-bucket rule; every id is in a stream
    # (except the few background images without a large enough free strip).
    assert not (streams["objects"] & streams["eval"])
    assert not (streams["objects"] & streams["backgrounds"])
    assert not (streams["eval"] & streams["backgrounds"])
    buckets = {k: tfds_data.bucket(tf.constant(sorted(v))).numpy() for k, v in streams.items()}
    assert buckets["backgrounds"].max() < 20
    assert buckets["eval"].min() >= 20 and buckets["eval"].max() < 30
    assert buckets["objects"].min() >= 30
    assert len(streams["objects"]) + len(streams["eval"]) > 1.4 * NUM_EXAMPLES


def test_cub_masks_are_cropped_like_their_images(mock_tfds):
    held_out = evaluation_batch(_config("cub", mock_tfds), 12)
    masks = held_out["mask"].numpy()[..., 0]
    assert set(np.unique(masks)) <= {0.0, 1.0}
    red = np.all(np.abs((held_out["image"].numpy() + 1) * 127.5 - RED) < 60, axis=-1)
    inter = np.logical_and(masks > 0, red).sum(axis=(1, 2))
    union = np.logical_or(masks > 0, red).sum(axis=(1, 2))
    assert np.all(inter / union > 0.75), inter / union


def test_unprepared_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--data_dir=.*manual_dir"):
        next(iter(training_dataset(_config("cars", str(tmp_path)))))
    with pytest.raises(FileNotFoundError, match="--data_dir=.*no such directory"):
        training_dataset(_config("cub", str(tmp_path / "missing")))
