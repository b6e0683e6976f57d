"""A user's own images: `--dataset=folder --data_dir=PATH` (docs/data.md).

Layout (sub-folders are searched too; hidden files and other extensions are ignored):
  PATH/images/        training object images, roughly centred (like FineGAN's bbox crops)
  PATH/backgrounds/   clean backgrounds (no object), from other photos
  PATH/eval/images/   optional held-out object images for evaluation and sample grids
  PATH/eval/masks/    optional: same relative path with a .png suffix; 0 = background,
                      > 127 = object; a mask of another size than its image is resized to it
  PATH/eval/labels.csv  optional: columns image,parent,child (image = path under eval/images)

Every file is decoded once with PIL (threads; any size; grayscale, RGBA/LA/transparent palette
composited on white, CMYK, 16-bit, EXIF rotation), resized and kept in memory as uint8; the
training pipeline is `from_tensor_slices` on those arrays, so an epoch costs no decoding.
  objects:     the centred square of side min(H, W), resized to S = --image_size;
  backgrounds: the centred square resized to 5/4 S; each step takes a random S x S crop;
  both streams: random horizontal flips.
Unreadable or truncated files are skipped with a warning naming each one (ValueError with
--strict_data). All checks run before TensorFlow sees any data.
"""

from __future__ import annotations

import concurrent.futures
import csv
import functools
import os
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps

from onegan_tf.config import Config
from onegan_tf.data import images

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
BACKGROUND_SCALE = 1.25  # backgrounds are stored larger, for random crops
LABEL_COLUMNS = ("image", "parent", "child")


class DataWarning(UserWarning):
    """A skipped file or row of a user's dataset."""


def _warn(message: str) -> None:
    warnings.warn(message, DataWarning, stacklevel=3)


def list_images(folder: Path) -> list[Path]:
    """Supported image files under `folder` (recursively), sorted."""
    found = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix.lower() in EXTENSIONS:
            found.append(path)
    return found


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB: 16-bit and float scaled to 8 bits, transparency on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float32)
        top = 1.0 if image.mode == "F" and values.max() <= 1.0 else (
            65535.0 if values.max() > 255 else 255.0)
        grey = np.clip(values * (255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _center_box(width: float, height: float) -> tuple[float, float, float, float]:
    """The centred square of side min(width, height): (left, top, right, bottom)."""
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


def load_rgb(path: Path, size: int) -> np.ndarray:
    """One image file -> uint8 [size, size, 3]: centred square, resized. Raises on bad files."""
    with Image.open(path) as image:
        image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale >= size (fast)
        image = to_rgb(ImageOps.exif_transpose(image))
        return np.asarray(image.resize((size, size), Image.Resampling.BICUBIC,
                                       box=_center_box(*image.size)))


def load_mask(path: Path, image_path: Path, size: int) -> tuple[np.ndarray, bool]:
    """A mask file -> (float32 {0, 1} [size, size, 1], whether it was resized to its image).

    The mask is stretched to its image's (EXIF-rotated) size and cropped like it; > 127 is
    object."""
    with Image.open(image_path) as image:
        width, height = image.size[::-1] if _has_rotation(image) else image.size
    with Image.open(path) as mask:
        mask = mask.convert("L")
        resized = mask.size != (width, height)
        sx, sy = mask.size[0] / width, mask.size[1] / height
        left, top, right, bottom = _center_box(width, height)
        crop = mask.resize((size, size), Image.Resampling.BILINEAR,
                           box=(left * sx, top * sy, right * sx, bottom * sy))
    return (np.asarray(crop) > 127).astype(np.float32)[..., None], resized


def _has_rotation(image: Image.Image) -> bool:
    return image.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # orientations that swap W and H


def _load_all(paths: list[Path], load, strict: bool) -> list:
    """Runs load(path) on a thread pool (PIL releases the GIL while decoding); bad files are
    skipped with a warning, or raise ValueError when strict. Returns [(path, result)]."""
    workers = min(32, (os.cpu_count() or 1) + 4)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda p: _try(load, p), paths))
    loaded = []
    for path, (value, error) in zip(paths, results):
        if error is None:
            loaded.append((path, value))
        elif strict:
            raise ValueError(f"unreadable image {path}: {error} (--strict_data=true; remove "
                             "the file or drop --strict_data to skip it)")
        else:
            _warn(f"skipping unreadable image {path}: {error}")
    return loaded


def _try(load, path):
    try:
        return load(path), None
    except Exception as error:  # noqa: BLE001 - any decoder failure means "unreadable"
        return None, f"{type(error).__name__}: {error}"


def _image_folder(root: Path, name: str) -> list[Path]:
    folder = root / name
    if not folder.is_dir():
        raise FileNotFoundError(
            f"--data_dir={root}: missing folder {folder}/ (--dataset=folder expects "
            f"{root}/images/ and {root}/backgrounds/; README, section 'Data')")
    paths = list_images(folder)
    if not paths:
        raise ValueError(f"--data_dir={root}: no images in {folder}/ (looked for "
                         f"{', '.join(EXTENSIONS)}, also in sub-folders)")
    return paths


def _root(config: Config) -> Path:
    if not config.data_dir:
        raise ValueError("--dataset=folder needs --data_dir=PATH, a folder with images/ and "
                         "backgrounds/ (README, section 'Data')")
    root = Path(config.data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"--data_dir={config.data_dir}: no such directory "
                                "(--dataset=folder)")
    return root


def _stack(loaded, folder: Path) -> np.ndarray:
    if not loaded:
        raise ValueError(f"--data_dir: no readable images in {folder}/ (every file failed to "
                         "decode; see the warnings above)")
    return np.stack([value for _, value in loaded])


def check_layout(config: Config):
    """The training folders exist and hold images (cheap: no decoding); raises like
    `training_dataset` would, before a run directory or a model is created."""
    root = _root(config)
    _image_folder(root, "images")
    _image_folder(root, "backgrounds")


@functools.lru_cache(maxsize=4)
def _training_arrays(root: Path, image_size: int, strict: bool):
    object_paths = _image_folder(root, "images")
    background_paths = _image_folder(root, "backgrounds")
    bg_size = int(round(image_size * BACKGROUND_SCALE))
    objects = _load_all(object_paths, lambda p: load_rgb(p, image_size), strict)
    backgrounds = _load_all(background_paths, lambda p: load_rgb(p, bg_size), strict)
    return _stack(objects, root / "images"), _stack(backgrounds, root / "backgrounds")


def training_arrays(config: Config) -> tuple[np.ndarray, np.ndarray]:
    """(objects uint8 [N, S, S, 3], backgrounds uint8 [M, 5/4 S, 5/4 S, 3]), decoded once."""
    return _training_arrays(_root(config), config.image_size, config.strict_data)


def training_dataset(config: Config, start_step: int = 0) -> tf.data.Dataset:
    """Infinite shuffled batches {"image", "background"}: float32 [B, S, S, 3] in [-1, 1]."""
    objects, backgrounds = training_arrays(config)
    size, seed = config.image_size, config.seed + start_step

    def stream(array, augment, seed):
        ds = tf.data.Dataset.from_tensor_slices(array)
        ds = ds.shuffle(len(array), seed=seed, reshuffle_each_iteration=True).repeat()
        return ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE).batch(
            config.batch_size, drop_remainder=True)

    def augment_object(image):
        return images.to_model_range(tf.image.random_flip_left_right(image))

    def augment_background(image):
        image = tf.image.random_crop(image, [size, size, 3])
        return images.to_model_range(tf.image.random_flip_left_right(image))

    return tf.data.Dataset.zip(
        stream(objects, augment_object, seed), stream(backgrounds, augment_background, seed + 1)
    ).map(lambda obj, bg: {"image": obj, "background": bg}).prefetch(tf.data.AUTOTUNE)


def _read_labels(path: Path, images_dir: Path) -> dict[str, tuple[int, int]]:
    """labels.csv -> {relative image path: (parent, child)}; rows naming missing files are
    skipped with a warning."""
    labels = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in LABEL_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected a "
                             f"header {','.join(LABEL_COLUMNS)}")
        for line, row in enumerate(reader, start=2):
            name = (row["image"] or "").strip()
            try:
                parent, child = int(row["parent"]), int(row["child"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{line}: parent and child must be integers, got "
                                 f"{row['parent']!r}, {row['child']!r}") from None
            if not (images_dir / name).is_file():
                _warn(f"{path}:{line}: skipping the row for {name!r}: no such file in "
                      f"{images_dir}/")
                continue
            labels[name] = (parent, child)
    return labels


@functools.lru_cache(maxsize=4)
def _evaluation_arrays(root: Path, image_size: int, strict: bool) -> dict[str, np.ndarray]:
    eval_dir = root / "eval"
    images_dir, masks_dir = eval_dir / "images", eval_dir / "masks"
    labels_path = eval_dir / "labels.csv"
    if not images_dir.is_dir():
        # No held-out set: sample grids show training images; no metrics.
        paths = _image_folder(root, "images")
        loaded = _load_all(paths, lambda p: load_rgb(p, image_size), strict)
        return {"image": _stack(loaded, root / "images")}
    paths = list_images(images_dir)
    if not paths:
        raise ValueError(f"--data_dir={root}: {images_dir}/ exists but holds no images")
    labels = _read_labels(labels_path, images_dir) if labels_path.is_file() else None
    keep = []
    for path in paths:
        rel = path.relative_to(images_dir).as_posix()
        if labels is not None and rel not in labels:
            _warn(f"skipping {path}: no row in {labels_path}")
        elif masks_dir.is_dir() and not (masks_dir / rel).with_suffix(".png").is_file():
            _warn(f"skipping {path}: no mask {(masks_dir / rel).with_suffix('.png')}")
        else:
            keep.append(path)

    def load(path):
        out = {"image": load_rgb(path, image_size)}
        if masks_dir.is_dir():
            mask_path = (masks_dir / path.relative_to(images_dir)).with_suffix(".png")
            out["mask"], out["resized"] = load_mask(mask_path, path, image_size)
        return out

    loaded = _load_all(keep, load, strict)
    if not loaded:
        raise ValueError(f"--data_dir={root}: no usable evaluation images in {images_dir}/ "
                         "(see the warnings above)")
    resized = sum(bool(v.get("resized")) for _, v in loaded)
    if resized:
        _warn(f"{resized} mask(s) in {masks_dir}/ differ in size from their image; resized")
    out = {"image": np.stack([v["image"] for _, v in loaded])}
    if masks_dir.is_dir():
        out["mask"] = np.stack([v["mask"] for _, v in loaded])
    if labels is not None:
        rels = [p.relative_to(images_dir).as_posix() for p, _ in loaded]
        out["parent"] = np.array([labels[r][0] for r in rels], np.int32)
        out["child"] = np.array([labels[r][1] for r in rels], np.int32)
    return out


def evaluation_batch(config: Config, size: int) -> dict[str, tf.Tensor]:
    """Up to `size` evaluation images in file-name order: "image" float32 [N, S, S, 3] in
    [-1, 1]; with eval/masks/ "mask" float32 {0, 1} [N, S, S, 1]; with eval/labels.csv
    "parent" and "child" int32 [N]. Without eval/images/ the first training images, image only.
    """
    arrays = _evaluation_arrays(_root(config), config.image_size, config.strict_data)
    out = {k: tf.constant(v[:size]) for k, v in arrays.items()}
    out["image"] = images.to_model_range(out["image"])
    return out
