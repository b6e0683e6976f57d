"""Evaluate a run: `python -m onegan_tf.evaluate --run_dir=RUN`.

Loads the newest checkpoint's EMA model, measures on held-out images every metric of the
paper's Tables 1-2 that the dataset has ground truth for, beside trivial baselines, and writes
RUN/metrics.json and RUN/metrics.md (also printed), and the paper's Fig. 3-6 layouts as
RUN/figures/{generation,reconstruction,conditional_generation,translation}.png:

- segmentation IoU / DICE (masks: shapes, clutter, CUB, a folder with eval/masks/);
- clustering ACC / NMI at parent level (E_p's own head, and separately the code-tree parent
  of E_c's child) and child level (labels: shapes, clutter, a folder's labels.csv; the class
  label of CUB / Dogs / Cars at child level);
- reconstruction L1; object removal L1 / PSNR inside the object against the true clean
  background (shapes and clutter only: no real dataset has it);
- FID, IS, CFID, CIS and the diversity within a code from the evaluator network: a cached
  small classifier for shapes and one for clutter (built by default), `--evaluator_weights`
  (InceptionV3, see `python -m onegan_tf.evaluator`) for real data;
- the shape accuracy of generated masks (shapes and clutter: a cached classifier of the shape
  family of a mask, trained on true masks) and the area of generated masks against the true
  objects'.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

from absl import flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from onegan_tf import cli  # noqa: E402

FLAGS = flags.FLAGS
FID_SAMPLES = 10_000  # the usual sample count of the reference FID protocol


def define_flags():
    flags.DEFINE_string("run_dir", None, "training run directory (config.json + checkpoints/)")
    flags.DEFINE_integer("examples", 2048, "held-out images to evaluate on (real data: up to "
                         "as many as the held-out split has)")
    flags.DEFINE_integer("generated", None, "generated images for FID/IS (default: --examples; "
                         "--fid_samples with an InceptionV3 evaluator)")
    flags.DEFINE_integer("fid_samples", FID_SAMPLES,
                         "InceptionV3 evaluator (--evaluator_weights): generated images and "
                         "training objects compared by FID (the reference protocol)")
    flags.DEFINE_string("evaluator_weights", None,
                        "local evaluator file for FID/IS on real data: a fine-tuned .keras "
                        "from python -m onegan_tf.evaluator, or ImageNet InceptionV3 .h5")
    flags.DEFINE_string("evaluator_cache", None, "where the shapes / clutter evaluators and "
                        "shape classifiers are cached (default $ONEGAN_TF_CACHE or "
                        "~/.cache/onegan_tf)")
    flags.DEFINE_string("data_dir", None, "override the run's --data_dir (data moved)")
    flags.DEFINE_integer("seed", 0, "seed of the generated images and the k-means baseline")


def evaluate_run(run_dir, *, examples: int = 2048, generated: int | None = None,
                 evaluator_weights: str | None = None, evaluator_cache: str | None = None,
                 data_dir: str | None = None, seed: int = 0, fid_samples: int = FID_SAMPLES,
                 log=print) -> dict:
    """Evaluates the newest checkpoint of `run_dir`; writes metrics.json and metrics.md.

    With an InceptionV3 evaluator (`evaluator_weights`), FID follows the reference protocol:
    `fid_samples` generated images (unless `generated` says otherwise) against as many
    training objects, 8-bit images, unbiased covariances (report.py)."""
    from onegan_tf import data, fileio
    from onegan_tf.evaluation import grids, networks, report
    from onegan_tf.training import loop, rundir

    config = rundir.load_config(run_dir)
    if data_dir:
        config = dataclasses.replace(config, data_dir=data_dir)
    if examples < 16:
        raise ValueError(f"--examples={examples}: need at least 16 held-out images")
    started = time.time()
    batch = {k: v.numpy() for k, v in data.evaluation_batch(config, examples).items()}
    model = loop.build_model(config)
    restored = rundir.restore_latest(model, run_dir, log=log)
    if restored is None:
        raise FileNotFoundError(f"--run_dir={run_dir}: no checkpoint to evaluate")
    step, checkpoint = restored

    skipped = []
    if "mask" not in batch:
        skipped.append(f"segmentation: --dataset={config.dataset} has no ground-truth masks"
                       + (" (add eval/masks/)" if config.dataset == "folder" else ""))
    if "parent" not in batch and "child" not in batch:
        skipped.append("clustering: no class labels"
                       + (" (add eval/labels.csv)" if config.dataset == "folder" else ""))
    if "background" not in batch:
        skipped.append("object removal: only the synthetic data has true clean backgrounds")
    judge, shape_judge = None, None
    if evaluator_weights:
        judge = networks.load_evaluator(evaluator_weights)
    elif config.dataset in networks.SYNTHETIC_DATASETS:
        judge = networks.shapes_evaluator(config.image_size, evaluator_cache, log=log,
                                          dataset=config.dataset)
    else:
        skipped.append("FID / IS / CFID / CIS / diversity: give --evaluator_weights (see "
                       "python -m onegan_tf.evaluator)")
    if config.dataset in networks.SYNTHETIC_DATASETS:
        shape_judge = networks.shape_classifier(config.image_size, networks.SHAPE_FAMILIES,
                                                 evaluator_cache, log=log,
                                                 dataset=config.dataset)
    else:
        skipped.append("shape accuracy of generated masks: only the synthetic data has "
                       "known shape families")

    reference = None
    if judge is not None and judge.reference_protocol:
        if fid_samples < 2:
            raise ValueError(f"--fid_samples={fid_samples}: need at least 2")
        generated = generated or fid_samples
        log(f"FID reference: InceptionV3 features of {fid_samples} training objects")
        reference = report.training_reference_features(
            judge, data.training_dataset(config).as_numpy_iterator(), fid_samples)
    results = report.evaluate(model.ema, batch, judge, generated, seed, shape_judge,
                              reference)
    figure_dir = os.path.join(run_dir, "figures")
    try:
        os.makedirs(figure_dir, exist_ok=True)
    except OSError as error:
        raise fileio.fs_error("create", figure_dir, error) from None
    for name, grid in loop.figures(model, config, batch).items():
        grids.save_png(os.path.join(figure_dir, f"{name}.png"), grid)
    results.update(step=int(step), checkpoint=checkpoint.name, run_dir=str(run_dir),
                   dataset=config.dataset, skipped=skipped, seconds=round(time.time() - started, 1))
    table = report.markdown_table(results, f"Evaluation of {run_dir}")
    fileio.atomic_write(os.path.join(run_dir, "metrics.json"),
                        json.dumps(results, indent=2, sort_keys=True) + "\n")
    fileio.atomic_write(os.path.join(run_dir, "metrics.md"), table)
    log(table)
    return results


def main(argv):
    if cli.missing_arguments(argv, "run_dir"):
        return 2
    try:
        evaluate_run(FLAGS.run_dir, examples=FLAGS.examples, generated=FLAGS.generated,
                     evaluator_weights=FLAGS.evaluator_weights,
                     evaluator_cache=FLAGS.evaluator_cache, data_dir=FLAGS.data_dir,
                     seed=FLAGS.seed, fid_samples=FLAGS.fid_samples)
    except (ValueError, FileNotFoundError, OSError, RuntimeError) as error:
        return cli.failed(error)
    print(f"wrote {os.path.join(FLAGS.run_dir, 'metrics.json')} and metrics.md")
    return 0


run = cli.command(main, define_flags)  # the console script


if __name__ == "__main__":
    run()
