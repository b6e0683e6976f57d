"""Run an exported OneGAN on image files:
`python -m onegan_tf.predict --model=export/shapes/1 --input=photos/ --task=segment --output=out/`.

Tasks (each image is decoded and resized inside the SavedModel's `<task>_bytes` signature, so
any size of JPEG/PNG/BMP/GIF works):
  segment        OUT/<name>_mask.png (soft mask, at the input's size) and
                 OUT/<name>_overlay.png (the input with the mask's foreground tinted)
  cluster        OUT/clusters.csv: file, parent, parent_prob, child, child_prob, child_prob_<k>...
  remove_object  OUT/<name>_background.png (model resolution)
  translate      OUT/<name>_child<ID>.png (model resolution), with --child_id
Unreadable inputs are reported by name and skipped (and counted in the summary).
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

FLAGS = flags.FLAGS
TASKS = ("segment", "cluster", "remove_object", "translate")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
OVERLAY_COLOR = (255, 64, 0)


def list_inputs(specs: list[str]) -> list[Path]:
    """Files and the image files of directories (sorted), in the order given."""
    files = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(path)
    return files


def read_image(path: Path):
    """-> (encoded bytes, original (height, width)) or raises ValueError naming the file."""
    import tensorflow as tf

    try:
        data = path.read_bytes()
        shape = tf.io.decode_image(data, channels=3, expand_animations=False).shape
    except (OSError, tf.errors.OpError) as error:
        message = getattr(error, "message", None) or str(error)
        raise ValueError(f"{path}: unreadable image ({message.splitlines()[0][:120]})") from None
    return data, (int(shape[0]), int(shape[1]))


def to_png(array, path: Path, size=None):
    """array [H, W, C] in [-1, 1] (C=3) or [0, 1] (C=1) -> PNG, optionally resized (W, H)."""
    import numpy as np
    from PIL import Image

    if array.shape[-1] == 1:
        image = Image.fromarray(np.uint8(np.clip(array[..., 0], 0, 1) * 255 + 0.5), "L")
    else:
        image = Image.fromarray(np.uint8(np.clip(array * 127.5 + 127.5, 0, 255) + 0.5), "RGB")
    if size is not None and image.size != size:
        image = image.resize(size, Image.BILINEAR)
    image.save(path)
    return image


def overlay(original_bytes: bytes, mask_image, path: Path):
    """The original image with the mask tinted in OVERLAY_COLOR (alpha 0.5 * mask)."""
    import io

    import numpy as np
    from PIL import Image

    base = np.asarray(Image.open(io.BytesIO(original_bytes)).convert("RGB"), np.float32)
    alpha = np.asarray(mask_image, np.float32)[..., None] / 255.0 * 0.5
    tinted = base * (1 - alpha) + np.array(OVERLAY_COLOR, np.float32) * alpha
    Image.fromarray(np.uint8(tinted + 0.5)).save(path)


def predict(model_dir, inputs: list[str], task: str, output_dir, child_id: int | None = None,
            batch_size: int = 16, log=print, progress: bool = True) -> dict:
    """Library form of the CLI. Returns {"written": [paths], "skipped": [messages]}."""
    import keras
    import numpy as np

    from onegan_tf import serving

    if task not in TASKS:
        raise ValueError(f"--task={task}: choose one of {', '.join(TASKS)}")
    if task == "translate" and child_id is None:
        raise ValueError("--task=translate needs --child_id (the target child cluster)")
    model = serving.ServedModel(model_dir)
    if task == "translate":
        children = model.num_children
        if not 0 <= child_id < children:
            raise ValueError(f"--child_id={child_id}: the model has children 0..{children - 1}")
    files = list_inputs(inputs)
    if not files:
        raise ValueError(f"--input={','.join(inputs)}: no image files")
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    written, skipped, rows = [], [], []
    bar = keras.utils.Progbar(len(files), unit_name="image") if progress else None
    done = 0
    for start in range(0, len(files), batch_size):
        batch = []
        for path in files[start:start + batch_size]:
            try:
                batch.append((path, *read_image(path)))
            except ValueError as error:
                skipped.append(str(error))
                log(f"skipped {error}")
        if batch:
            encoded = np.array([data for _, data, _ in batch], dtype=object)
            inputs_ = {"image_bytes": encoded}
            if task == "translate":
                inputs_["child_id"] = np.full([len(batch)], child_id, np.int32)
            out = model(f"{task}_bytes", **inputs_)
            for i, (path, data, (height, width)) in enumerate(batch):
                stem = output / path.stem
                if task == "segment":
                    mask = to_png(out["mask"][i], Path(f"{stem}_mask.png"), (width, height))
                    overlay(data, mask, Path(f"{stem}_overlay.png"))
                    written += [Path(f"{stem}_mask.png"), Path(f"{stem}_overlay.png")]
                elif task == "remove_object":
                    written.append(Path(f"{stem}_background.png"))
                    to_png(out["background"][i], written[-1])
                elif task == "translate":
                    written.append(Path(f"{stem}_child{child_id}.png"))
                    to_png(out["image"][i], written[-1])
                else:
                    rows.append([str(path), int(out["parent"][i]),
                                 float(out["parent_probs"][i].max()), int(out["child"][i]),
                                 float(out["child_probs"][i].max()),
                                 *(f"{p:.6f}" for p in out["child_probs"][i])])
        done += len(files[start:start + batch_size])
        if bar is not None:
            bar.update(done)
    if task == "cluster" and rows:
        table = output / "clusters.csv"
        children = len(rows[0]) - 5
        with open(table, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "parent", "parent_prob", "child", "child_prob",
                             *(f"child_prob_{k}" for k in range(children))])
            writer.writerows(rows)
        written.append(table)
    return {"written": written, "skipped": skipped}


def define_flags():
    flags.DEFINE_string("model", None, "an exported version directory: export/NAME/N")
    flags.DEFINE_list("input", None, "image files and/or directories (comma-separated)")
    flags.DEFINE_enum("task", "segment", TASKS, "what to compute")
    flags.DEFINE_string("output", None, "output directory")
    flags.DEFINE_integer("child_id", None, "target child cluster for --task=translate")
    flags.DEFINE_integer("batch_size", 16, "images per call")


def main(argv):
    files = argv[1:]  # positional arguments are inputs too (shell globs)
    missing = [f"--{name}" for name in ("model", "output") if not FLAGS[name].value]
    if missing or not (FLAGS.input or files):
        print(f"error: {', '.join(missing + ([] if FLAGS.input or files else ['--input']))} "
              "required", file=sys.stderr)
        return 2
    try:
        result = predict(FLAGS.model, (FLAGS.input or []) + files, FLAGS.task, FLAGS.output,
                         FLAGS.child_id, FLAGS.batch_size,
                         log=lambda m: print(m, file=sys.stderr))
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(result['written'])} files to {FLAGS.output}"
          + (f"; skipped {len(result['skipped'])} unreadable" if result["skipped"] else ""))
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
