"""CUB-200-2011, Stanford Dogs and Stanford Cars from prepared TFDS data (docs/data.md).

Split rule: every image has a stable id, "<tfds split>/<file name>" ("image/filename" for CUB
and Dogs, "id" for Cars, whose names repeat across splits). `tf.strings.to_hash_bucket_fast`
(FarmHash fingerprint64, fixed across platforms and TF versions) maps it to a bucket in
[0, 100), independent of --seed:
  buckets [0, 20)   -> background images: only patches beside the bbox are used;
  buckets [20, 30)  -> held-out object images for evaluation (grids, segmentation metrics);
  buckets [30, 100) -> training object images.
So 80% of the images are object images, 20% give backgrounds, and no image is in two streams.

Objects: the FineGAN square (1.5 x the larger bbox side, see `images.object_window`), resized to
--image_size. Dogs images can hold several dogs: the crop follows the largest box, and
background patches avoid all of them. Backgrounds: squares from the free strips beside the bbox
(`images.background_windows`) with a side of at least --image_size/2 px; images without one are
skipped. CUB's segmentation masks are resized to their image, cropped like it, thresholded.

Decoded, cropped uint8 examples are cached in memory when they fit `CACHE_BYTES`.
"""

from __future__ import annotations

import os

import tensorflow as tf

from onegan_tf.config import Config
from onegan_tf.data import images

BACKGROUND_PERCENT = 20
EVAL_PERCENT = 10
CACHE_BYTES = 2 << 30  # in-memory cache budget per stream (uint8 crops)
SHUFFLE_BUFFER = 2048


# TFDS name, the id feature, the mask feature, and how to get the object boxes [N, 4].
SPECS = {
    "cub": dict(name="caltech_birds2011", key="image/filename", mask="segmentation_mask",
                boxes=lambda ex: ex["bbox"][None]),
    "dogs": dict(name="stanford_dogs", key="image/filename", mask=None,
                 boxes=lambda ex: ex["objects"]["bbox"]),
    "cars": dict(name="cars196", key="id", mask=None, boxes=lambda ex: ex["bbox"][None]),
}


def _prepare_hint(name: str, data_dir: str) -> str:
    manual = os.path.join(data_dir or "~/tensorflow_datasets", "downloads", "manual")
    archives = {
        "caltech_birds2011": "CUB_200_2011.tgz and segmentations.tgz",
        "stanford_dogs": "images.tar, annotation.tar and lists.tar",
        "cars196": "cars_train.tgz, cars_test.tgz, cars_test_annos_withlabels.mat and "
                   "car_devkit.tgz (the upstream URLs are dead: find copies yourself)",
    }[name]
    extra = " (needs pip install opencv-python-headless)" if name == "caltech_birds2011" else ""
    return (f"This library never downloads. Put {archives} in {manual}/ and run{extra}\n"
            f"  tfds build {name} --data_dir={data_dir or '~/tensorflow_datasets'} "
            f"--manual_dir={manual}\n"
            "(README, section 'Data'), then pass the same --data_dir.")


def _builder(config: Config):
    import tensorflow_datasets as tfds  # imported only for the TFDS datasets

    name = SPECS[config.dataset]["name"]
    if config.data_dir and not os.path.isdir(os.path.expanduser(config.data_dir)):
        raise FileNotFoundError(
            f"--data_dir={config.data_dir}: no such directory (--dataset={config.dataset} reads "
            f"prepared TFDS data '{name}' from it).\n" + _prepare_hint(name, config.data_dir))
    data_dir = os.path.expanduser(config.data_dir) if config.data_dir else None
    return tfds.builder(name, data_dir=data_dir)


def _raw_examples(config: Config) -> tf.data.Dataset:
    """All images of all TFDS splits as {"id", "image" (encoded), "box", "clear_box", "label"
    [, "mask" (encoded)]}; raises FileNotFoundError when the data is not prepared."""
    import tensorflow_datasets as tfds

    spec = SPECS[config.dataset]
    builder = _builder(config)
    splits = sorted(builder.info.splits.keys()) or ["test", "train"]
    decoders = {"image": tfds.decode.SkipDecoding()}
    if spec["mask"]:
        decoders[spec["mask"]] = tfds.decode.SkipDecoding()

    def standardize(split):
        def fn(ex):
            boxes = spec["boxes"](ex)
            out = {
                "id": tf.strings.join([split, "/", ex[spec["key"]]]),
                "image": ex["image"],
                # No box (a Dogs image without annotation) -> empty box, dropped later.
                "box": tf.cond(tf.shape(boxes)[0] > 0, lambda: images.largest_box(boxes),
                               lambda: tf.zeros([4])),
                "clear_box": tf.cond(tf.shape(boxes)[0] > 0, lambda: images.union_box(boxes),
                                     lambda: tf.zeros([4])),
                "label": tf.cast(ex["label"], tf.int32),
            }
            if spec["mask"]:
                out["mask"] = ex[spec["mask"]]
            return out
        return fn

    datasets = []
    for split in splits:
        try:
            ds = builder.as_dataset(split=split, decoders=decoders, shuffle_files=False)
        except AssertionError:  # TFDS: "could not find data in ..."
            raise FileNotFoundError(
                f"--dataset={config.dataset}: no prepared TFDS data '{spec['name']}' in "
                f"--data_dir={config.data_dir or '(TFDS default)'}.\n"
                + _prepare_hint(spec["name"], config.data_dir)) from None
        datasets.append(ds.map(standardize(split), num_parallel_calls=tf.data.AUTOTUNE))
    out = datasets[0]
    for ds in datasets[1:]:
        out = out.concatenate(ds)
    return out


def bucket(ids):
    """Stable split bucket in [0, 100) of string ids (see the module docstring)."""
    return tf.strings.to_hash_bucket_fast(ids, 100)


def _in_stream(stream):
    lo, hi = {"backgrounds": (0, BACKGROUND_PERCENT),
              "eval": (BACKGROUND_PERCENT, BACKGROUND_PERCENT + EVAL_PERCENT),
              "objects": (BACKGROUND_PERCENT + EVAL_PERCENT, 100)}[stream]
    return lambda ex: tf.logical_and(bucket(ex["id"]) >= lo, bucket(ex["id"]) < hi)


def _decode(ex, box_key):
    image = tf.io.decode_image(ex["image"], channels=3, expand_animations=False)
    shape = tf.shape(image)
    box_px = images.normalized_box_to_pixels(ex[box_key], shape[0], shape[1])
    return image, shape[0], shape[1], box_px


def _fits_cache(config: Config, builder_examples: int | None, fraction: float,
                per_example: int = 1) -> bool:
    if not builder_examples:
        return True  # unknown size (mock data): small
    size = builder_examples * fraction * per_example * config.image_size ** 2 * 3
    return size <= CACHE_BYTES


def _total_examples(config: Config) -> int | None:
    try:
        return int(_builder(config).info.splits.total_num_examples) or None
    except Exception:  # noqa: BLE001 - unknown splits (mock data)
        return None


def object_examples(config: Config, stream: str = "objects") -> tf.data.Dataset:
    """Cropped object images in file order: {"id", "image" uint8 [S, S, 3], "label"
    [, "mask" float32 {0, 1} [S, S, 1] for CUB and stream="eval"]}."""
    size = config.image_size
    with_mask = stream == "eval" and SPECS[config.dataset]["mask"] is not None

    def crop(ex):
        image, height, width, box_px = _decode(ex, "box")
        window = images.object_window(box_px, height, width)
        out = {"id": ex["id"], "label": ex["label"], "valid": images.box_is_valid(box_px),
               "image": images.resize_uint8(images.crop_square(image, window), size)}
        if with_mask:
            mask = tf.io.decode_png(ex["mask"], channels=1)
            out["mask"] = images.crop_mask(mask, height, width, window, size)
        return out

    ds = _raw_examples(config).filter(_in_stream(stream))
    ds = ds.map(crop, num_parallel_calls=tf.data.AUTOTUNE)
    if not config.strict_data:
        ds = ds.ignore_errors(log_warning=True)  # an undecodable image is skipped
    ds = ds.filter(lambda ex: ex["valid"])
    return ds.map(lambda ex: {k: v for k, v in ex.items() if k != "valid"})


def background_examples(config: Config) -> tf.data.Dataset:
    """Clean background patches: {"id" (of the source image), "image" uint8 [S, S, 3]}."""
    size = config.image_size
    min_side = max(size // 2, 1)

    def patches(ex):
        image, height, width, box_px = _decode(ex, "clear_box")
        windows = images.background_windows(box_px, height, width, min_side)
        windows = tf.cond(images.box_is_valid(box_px), lambda: windows,
                          lambda: tf.zeros([0, 3], tf.int32))  # unknown object: no patch
        crops = tf.map_fn(
            lambda w: images.resize_uint8(images.crop_square(image, w), size), windows,
            fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
        return {"id": tf.fill(tf.shape(windows)[:1], ex["id"]), "image": crops}

    ds = _raw_examples(config).filter(_in_stream("backgrounds"))
    ds = ds.map(patches, num_parallel_calls=tf.data.AUTOTUNE)
    if not config.strict_data:
        ds = ds.ignore_errors(log_warning=True)
    return ds.unbatch()


def _training_stream(examples, seed, batch_size):
    def augment(ex):
        return images.to_model_range(tf.image.random_flip_left_right(ex["image"]))

    return (examples.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
            .repeat()
            .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size, drop_remainder=True))


def training_dataset(config: Config, start_step: int = 0) -> tf.data.Dataset:
    """Infinite shuffled batches {"image", "background"}: float32 [B, S, S, 3] in [-1, 1]."""
    total = _total_examples(config)
    train_fraction = (100 - BACKGROUND_PERCENT - EVAL_PERCENT) / 100
    objects = object_examples(config)
    if _fits_cache(config, total, train_fraction):
        objects = objects.cache()
    backgrounds = background_examples(config)
    if _fits_cache(config, total, BACKGROUND_PERCENT / 100, images.BACKGROUND_STRIPS):
        backgrounds = backgrounds.cache()
    # A resumed segment reshuffles differently (tf.data order is not resumable exactly).
    seed = config.seed + start_step
    objects = _training_stream(objects, seed, config.batch_size)
    backgrounds = _training_stream(backgrounds, seed + 1, config.batch_size)
    return tf.data.Dataset.zip(objects, backgrounds).map(
        lambda obj, bg: {"image": obj, "background": bg}).prefetch(tf.data.AUTOTUNE)


def evaluation_batch(config: Config, size: int) -> dict[str, tf.Tensor]:
    """Up to `size` held-out object images (the same ones every call): "image" float32
    [N, S, S, 3] in [-1, 1], "child" int32 [N] (the class label), and for CUB "mask" float32
    [N, S, S, 1] in {0, 1}. Dogs and Cars have no masks."""
    examples = object_examples(config, "eval").take(size)
    batch = next(iter(examples.batch(size)), None)
    if batch is None:
        raise ValueError(f"--dataset={config.dataset}: no held-out images with a valid bbox in "
                         f"--data_dir={config.data_dir}")
    out = {"image": images.to_model_range(batch["image"]), "child": batch["label"]}
    if "mask" in batch:
        out["mask"] = batch["mask"]
    return out
