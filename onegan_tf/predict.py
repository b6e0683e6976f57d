"""Run an exported OneGAN on image files:
`python -m onegan_tf.predict --model=export/shapes/1 --input=photos/ --task=segment --output=out/`.

Tasks (each image is decoded and resized inside the SavedModel's `<task>_bytes` signature, so
any size of JPEG/PNG/BMP/GIF works):
  segment        OUT/<name>_mask.png (soft mask, at the input's size) and
                 OUT/<name>_overlay.png (the image with the mask's foreground tinted, at the
                 size it was decoded at: the input's size up to 16 MP, see below)
  cluster        OUT/clusters.csv: file, name, parent, parent_prob, child, child_prob,
                 child_prob_<k>...
  remove_object  OUT/<name>_background.png (model resolution)
  translate      OUT/<name>_child<ID>.png (model resolution), with --child_id
  generate       no input images: --count PNGs per code (model resolution, 8-bit),
                 OUT/child<C>_<seed>.png and OUT/generated.csv; every code, or the one
                 --child_id names; image i of each code uses seed --seed + i. These
                 folders are what FID tools read (torch-fidelity, clean-fid).

Output names: <name> is the input's file name with the dot of its suffix replaced by "_"
(`photo.jpg` -> `photo_jpg_mask.png`), so `a.png` and `a.jpg` never share outputs. Where a name
repeats anyway (the same file name in two folders), the later inputs get `_2`, `_3`, ... in
input order; a file listed twice is processed once. clusters.csv gives each row's name.

Image size: only the file's header is read before its pixel count is checked; an image of
more than --max_pixels (default 50 MP) is skipped with its size. Images of up to
DIRECT_PIXELS (16 MP) go to the model as they are; larger ones are decoded by PIL at a reduced
size (JPEG: at 1/2, 1/4 or 1/8 scale, `draft()`), shrunk to at most a quarter of that (4 MP)
and re-encoded, so a run never holds more than one --max_pixels image (3 bytes per pixel) at
full size.

Inputs that cannot be used (unreadable, too large) are reported by name and skipped; the
others are still written. Exit status: 0 when every input was processed; 1 when any input was
skipped (including all of them); 2 for bad arguments (a missing flag, an --input path that
does not exist, a model that cannot be loaded, --child_id out of range).
"""

from __future__ import annotations

import os
import sys

from absl import flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

from onegan_tf import cli  # noqa: E402
from onegan_tf.serving.image_files import (  # noqa: E402
    MAX_PIXELS,
    TASKS,
    generate_images,
    predict,
    short,
)

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("model", None, "an exported version directory: export/NAME/N")
    flags.DEFINE_list("input", None, "image files and/or directories (comma-separated)")
    flags.DEFINE_enum("task", "segment", TASKS, "what to compute")
    flags.DEFINE_string("output", None, "output directory")
    flags.DEFINE_integer("child_id", None, "target child cluster for --task=translate; the one "
                         "code for --task=generate (default: every code)")
    flags.DEFINE_integer("count", 10, "--task=generate: images per code")
    flags.DEFINE_integer("seed", 0, "--task=generate: the seed of each code's first image")
    flags.DEFINE_integer("batch_size", 16, "images per call")
    flags.DEFINE_integer("max_pixels", MAX_PIXELS,
                         "skip images of more pixels than this (checked on the file header)")


def main(argv):
    if FLAGS.task == "generate":
        return main_generate(argv)
    files = argv[1:]  # positional arguments are inputs too (shell globs)
    missing = [f"--{name}" for name in ("model", "output") if not FLAGS[name].value]
    if missing or not (FLAGS.input or files):
        print(f"error: {', '.join(missing + ([] if FLAGS.input or files else ['--input']))} "
              "required", file=sys.stderr)
        return 2
    inputs = (FLAGS.input or []) + files
    try:
        result = predict(FLAGS.model, inputs, FLAGS.task, FLAGS.output, FLAGS.child_id,
                         FLAGS.batch_size, log=lambda m: print(m, file=sys.stderr),
                         max_pixels=FLAGS.max_pixels)
    except (ValueError, OSError) as error:
        print(f"error: {short(str(error), 400)}", file=sys.stderr)
        return 2
    done, skipped = len(result["processed"]), len(result["skipped"])
    print(f"processed {done} of {done + skipped} images; wrote {len(result['written'])} files "
          f"to {FLAGS.output}" + (f"; skipped {skipped} (listed above)" if skipped else ""))
    if not done:
        print(f"error: none of the {skipped} inputs could be processed", file=sys.stderr)
    return 1 if skipped else 0


def main_generate(argv):
    missing = [f"--{name}" for name in ("model", "output") if not FLAGS[name].value]
    if missing:
        print(f"error: {', '.join(missing)} required", file=sys.stderr)
        return 2
    if FLAGS.input or len(argv) > 1:
        print("error: --task=generate takes no input images", file=sys.stderr)
        return 2
    try:
        result = generate_images(
            FLAGS.model, FLAGS.output, FLAGS.count,
            None if FLAGS.child_id is None else [FLAGS.child_id], seed=FLAGS.seed,
            batch_size=FLAGS.batch_size, log=lambda m: print(m, file=sys.stderr))
    except (ValueError, OSError) as error:
        print(f"error: {short(str(error), 400)}", file=sys.stderr)
        return 2
    print(f"generated {result['count']} images in {FLAGS.output}")
    return 0


run = cli.command(main, define_flags)  # the console script


if __name__ == "__main__":
    run()
