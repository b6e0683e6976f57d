"""Running an exported OneGAN over image files: the library of `python -m onegan_tf.predict`
(listing inputs, output names, bounded-memory decoding, writing masks, overlays, clusters.csv,
backgrounds and translations), and writing generated images to disk (`generate_images`)."""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path

IMAGE_TASKS = ("segment", "cluster", "remove_object", "translate")  # on input images
TASKS = IMAGE_TASKS + ("generate",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
OVERLAY_COLOR = (255, 64, 0)
MAX_PIXELS = 50_000_000  # default --max_pixels
DIRECT_PIXELS = 16_000_000  # larger images are decoded downscaled by PIL (to a quarter)
MESSAGE_CHARS = 160  # error text quoted in a skip message (cut at a word boundary)


def list_inputs(specs: list[str]) -> list[Path]:
    """Files and the image files of directories (sorted), in the order given, each once.
    Raises ValueError naming a path that does not exist."""
    files, seen = [], set()
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.exists():
            found = [path]
        else:
            raise ValueError(f"--input: {spec}: no such file or directory")
        for file in found:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                files.append(file)
    return files


def output_names(files: list[Path]) -> list[str]:
    """The output name of each file (see the module docstring): `a.png` -> `a_png`, repeats
    -> `a_png_2`, ... Unique also on case-insensitive file systems."""
    names, used = [], set()
    for path in files:
        base = path.stem + "_" + path.suffix[1:] if path.suffix else path.name
        name, count = base, 1
        while name.casefold() in used:
            count += 1
            name = f"{base}_{count}"
        used.add(name.casefold())
        names.append(name)
    return names


def short(message: str, limit: int = MESSAGE_CHARS) -> str:
    """The first line of an error message without TF's node prefix, cut at a word boundary."""
    line = (message.strip().splitlines() or [""])[0]
    if line.startswith("{{function_node") and "}}" in line:
        line = line.split("}}", 1)[1].strip()
    if len(line) > limit and " " in line[:limit]:
        line = line[:line.rindex(" ", 0, limit)] + " ..."
    return line


class _TooLarge(Exception):
    """An image over --max_pixels (kept apart from the decoders' ValueErrors)."""


def load_image(path: Path, max_pixels: int = MAX_PIXELS, direct_pixels: int = DIRECT_PIXELS):
    """-> (encoded bytes for the `_bytes` signature, the file's (width, height)), or raises
    ValueError naming the file. The size check reads only the header; above `direct_pixels`
    the image is decoded downscaled (PIL) to at most direct_pixels / 4 and re-encoded as PNG."""
    import tensorflow as tf
    from PIL import Image

    try:
        with warnings.catch_warnings():  # the size is checked here, against max_pixels
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                size = image.size
                pixels = size[0] * size[1]
                if pixels > max_pixels:
                    raise _TooLarge(f"{path}: too large: {size[0]}x{size[1]} pixels "
                                    f"({pixels / 1e6:.1f} MP) > --max_pixels={max_pixels}")
                if pixels > direct_pixels:
                    return _reduced_png(image, direct_pixels // 4), size
        data = path.read_bytes()
        # What the signature will do: a bad file is skipped here instead of failing its batch.
        tf.io.decode_image(data, channels=3, expand_animations=False)
    except _TooLarge as error:
        raise ValueError(str(error)) from None
    except Image.DecompressionBombError as error:
        raise ValueError(f"{path}: too large ({short(str(error))})") from None
    except (OSError, SyntaxError, ValueError, EOFError, tf.errors.OpError) as error:
        message = getattr(error, "message", None) or str(error) or type(error).__name__
        raise ValueError(f"{path}: unreadable image ({short(message)})") from None
    return data, size


def _reduced_png(image, max_pixels: int) -> bytes:
    """An opened (not yet decoded) PIL image -> PNG bytes of at most max_pixels pixels."""
    from PIL import Image

    from onegan_tf.data.folder import to_rgb

    scale = (max_pixels / (image.width * image.height)) ** 0.5
    target = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    image.draft("RGB", target)  # JPEG: decode at the smallest DCT scale >= target
    image = to_rgb(image)
    image.thumbnail(target, Image.Resampling.BILINEAR)  # (in place, keeps the aspect ratio)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def to_png(array, path: Path, size=None):
    """array [H, W, C] in [-1, 1] (C=3) or [0, 1] (C=1) -> PNG, optionally resized (W, H)."""
    image = to_image(array, size)
    image.save(path)
    return image


def to_image(array, size=None):
    """array [H, W, C] in [-1, 1] (C=3) or [0, 1] (C=1) -> PIL image, optionally resized."""
    import numpy as np
    from PIL import Image

    if array.shape[-1] == 1:
        image = Image.fromarray(np.uint8(np.clip(array[..., 0], 0, 1) * 255 + 0.5), "L")
    else:
        image = Image.fromarray(np.uint8(np.clip(array * 127.5 + 127.5, 0, 255) + 0.5), "RGB")
    if size is not None and image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    return image


def overlay(encoded: bytes, mask, path: Path):
    """The image `encoded` (as sent to the model: at most DIRECT_PIXELS) with the mask
    ([S, S, 1] in [0, 1]) tinted in OVERLAY_COLOR (alpha 0.5 * mask), at the image's size.
    8-bit PIL operations only: about 10 bytes per pixel."""
    from PIL import Image

    from onegan_tf.data.folder import to_rgb

    with Image.open(io.BytesIO(encoded)) as image:
        base = to_rgb(image)
    alpha = to_image(mask, base.size).point(lambda v: (v + 1) // 2)
    Image.composite(Image.new("RGB", base.size, OVERLAY_COLOR), base, alpha).save(path)


def predict(model, inputs: list[str], task: str, output_dir, child_id: int | None = None,
            batch_size: int = 16, log=print, progress: bool = True,
            max_pixels: int = MAX_PIXELS, direct_pixels: int = DIRECT_PIXELS) -> dict:
    """Library form of the CLI; `model` is an export version directory or a loaded
    `client.ServedModel`. Returns {"written": [paths], "skipped": [messages], "processed":
    [input paths]}. Raises ValueError for bad arguments (before any output)."""
    from onegan_tf.serving import client  # TensorFlow only when predicting

    if task not in IMAGE_TASKS:
        raise ValueError(f"--task={task}: choose one of {', '.join(IMAGE_TASKS)} (generate: "
                         "generate_images)")
    if task == "translate" and child_id is None:
        raise ValueError("--task=translate needs --child_id (the target child cluster)")
    if max_pixels < 1:
        raise ValueError(f"--max_pixels={max_pixels}: must be positive")
    files = list_inputs(inputs)  # before TensorFlow loads: a mistyped path fails at once
    if not files:
        raise ValueError(f"--input={','.join(inputs)}: no image files")
    import keras
    import numpy as np


    if not isinstance(model, client.ServedModel):
        model = client.ServedModel(model)
    if task == "translate":
        children = model.num_children
        if not 0 <= child_id < children:
            raise ValueError(f"--child_id={child_id}: the model has children 0..{children - 1}")
    names = dict(zip(files, output_names(files)))
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    written, skipped, processed, rows = [], [], [], []
    bar = keras.utils.Progbar(len(files), unit_name="image") if progress else None
    for start in range(0, len(files), batch_size):
        batch = []
        for path in files[start:start + batch_size]:
            try:
                batch.append((path, *load_image(path, max_pixels, direct_pixels)))
            except ValueError as error:
                skipped.append(str(error))
                log(f"skipped {error}")
        if batch:
            encoded = np.array([data for _, data, _ in batch], dtype=object)
            inputs_ = {"image_bytes": encoded}
            if task == "translate":
                inputs_["child_id"] = np.full([len(batch)], child_id, np.int32)
            out = model(f"{task}_bytes", **inputs_)
            for i, (path, data, size) in enumerate(batch):
                stem = output / names[path]
                if task == "segment":
                    written += [Path(f"{stem}_mask.png"), Path(f"{stem}_overlay.png")]
                    to_png(out["mask"][i], written[-2], size)
                    overlay(data, out["mask"][i], written[-1])
                elif task == "remove_object":
                    written.append(Path(f"{stem}_background.png"))
                    to_png(out["background"][i], written[-1])
                elif task == "translate":
                    written.append(Path(f"{stem}_child{child_id}.png"))
                    to_png(out["image"][i], written[-1])
                else:
                    rows.append([str(path), names[path], int(out["parent"][i]),
                                 float(out["parent_probs"][i].max()), int(out["child"][i]),
                                 float(out["child_probs"][i].max()),
                                 *(f"{p:.6f}" for p in out["child_probs"][i])])
                processed.append(path)
        if bar is not None:
            bar.update(min(start + batch_size, len(files)))
    if task == "cluster" and rows:
        table = output / "clusters.csv"
        children = len(rows[0]) - 6
        with open(table, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "name", "parent", "parent_prob", "child", "child_prob",
                             *(f"child_prob_{k}" for k in range(children))])
            writer.writerows(rows)
        written.append(table)
    return {"written": written, "skipped": skipped, "processed": processed}


def generate_images(model, output_dir, count: int, child_ids=None, seed: int = 0,
                    batch_size: int = 64, log=print, progress: bool = True) -> dict:
    """Writes `count` generated images per code as 8-bit PNGs at the model's resolution, for
    FID tools that read folders (torch-fidelity, clean-fid): OUT/child<C>_<seed>.png, flat, and
    OUT/generated.csv (file, child, parent, seed).

    Image i of every code is drawn with seed `seed + i` (the `generate` signature: z from the
    seed alone), so column i of all codes shares one z. `child_ids`: the codes (default all).
    `model`: an export version directory or a loaded `client.ServedModel`. Returns
    {"written": [paths], "count": images written}. ValueError for bad arguments, before any
    output."""
    from onegan_tf.serving import client  # TensorFlow only when generating

    if count < 1:
        raise ValueError(f"--count={count}: must be at least 1")
    if not isinstance(model, client.ServedModel):
        model = client.ServedModel(model)
    import keras
    import numpy as np

    children, parents = model.num_children, model.num_parents
    codes = list(range(children)) if child_ids is None else [int(c) for c in child_ids]
    bad = [c for c in codes if not 0 <= c < children]
    if bad or not codes:
        raise ValueError(f"--child_id={','.join(map(str, bad)) or '(none)'}: the model has "
                         f"children 0..{children - 1}")
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    width = len(str(seed + count - 1))
    jobs = [(c, seed + i) for c in codes for i in range(count)]
    written, rows = [], []
    bar = keras.utils.Progbar(len(jobs), unit_name="image") if progress else None
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start:start + batch_size]
        out = model("generate", child_id=np.array([c for c, _ in batch], np.int32),
                    seed=np.array([s for _, s in batch], np.int32))
        for (child, image_seed), image in zip(batch, out["image"]):
            path = output / f"child{child}_{image_seed:0{width}d}.png"
            to_png(image, path)
            written.append(path)
            rows.append([path.name, child, child * parents // children, image_seed])
        if bar is not None:
            bar.update(min(start + batch_size, len(jobs)))
    table = output / "generated.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "child", "parent", "seed"])
        writer.writerows(rows)
    log(f"wrote {len(rows)} generated images ({count} per code, {len(codes)} codes) to {output}")
    return {"written": written + [table], "count": len(rows)}
