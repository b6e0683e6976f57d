"""Training driver: run dir, strategy, model, resume, the phase schedule, fit() per segment.

Library code: takes a `Config`, never reads flags.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from onegan_tf import (
    data,
    fileio,
)
from onegan_tf.config import Config
from onegan_tf.evaluation import grids, report
from onegan_tf.serving import inference
from onegan_tf.training import callbacks as cb
from onegan_tf.training import distribute, rundir
from onegan_tf.training.trainer import OneGAN, active_paths, phase_two_start


def parameter_counts(model: OneGAN) -> dict[str, int]:
    return {name: int(net.count_params()) for name, net in model.networks().items()}


def schedule_boundaries(config: Config) -> list[int]:
    """Steps where the set of paths (or the clone loading) can change, plus the end."""
    points = {config.fake_recon_start, config.real_recon_start, config.total_steps}
    start = phase_two_start(config)
    if start is not None:
        points.add(start)
    return sorted(p for p in points if 0 < p <= config.total_steps) or [config.total_steps]


def build_model(config: Config, strategy=None) -> OneGAN:
    """OneGAN + its optimizers inside the strategy scope, with the config's dtype policy
    (float32 variables; float16/bfloat16 compute under mixed precision)."""
    strategy = strategy or tf.distribute.get_strategy()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.mixed_precision)
    try:
        with strategy.scope():
            model = OneGAN(config)
            model.compile(jit_compile=config.jit_compile)
    finally:
        keras.config.set_dtype_policy(previous)
    return model


def generation_sampler(config: Config):
    child, z = cb.fixed_generation_inputs(config)

    def sample(model):
        return grids.generation_grid(
            {k: v.numpy() for k, v in model.ema.generate(child, z).items()})
    return sample


def reconstruction_sampler(examples: dict, size: int = 12):
    """Fig. 4 on fixed held-out images (with the true masks when the dataset has them)."""
    images = examples["image"][:size]
    masks = examples["mask"][:size] if "mask" in examples else None

    def sample(model):
        out = inference.reconstruct(model.ema, images)
        return grids.reconstruction_grid(images, {k: v.numpy() for k, v in out.items()}, masks)
    return sample


def translation_sampler(config: Config, examples: dict, size: int = 6, targets: int = 6):
    """Fig. 6: each held-out image re-rendered with several target child codes."""
    images = examples["image"][:size]
    children = np.round(np.linspace(0, config.num_children - 1, targets)).astype(np.int32)

    def sample(model):
        return grids.translation_grid(
            images, [inference.translate(model.ema, images, c).numpy() for c in children])
    return sample


def conditional_generation_sampler(config: Config, examples: dict, size: int = 6,
                                   columns: int = 5):
    """Fig. 5: each held-out image's encoded child code rendered with several z per row."""
    images = examples["image"][:size]
    z = np.random.default_rng(config.seed + 2).standard_normal((columns, config.z_dim))

    def sample(model):
        child = inference.cluster(model.ema, images)["child"]
        rows = [inference.generate(model.ema, child, np.repeat(z[j:j + 1], len(images), 0)
                                   .astype(np.float32))["image"].numpy()
                for j in range(columns)]
        return grids.translation_grid(images, rows)
    return sample


def figures(model: OneGAN, config: Config, examples: dict) -> dict[str, np.ndarray]:
    """The paper's Fig. 3-6 layouts for a trained model: name -> uint8 grid."""
    return {"generation": generation_sampler(config)(model),
            "reconstruction": reconstruction_sampler(examples)(model),
            "conditional_generation": conditional_generation_sampler(config, examples)(model),
            "translation": translation_sampler(config, examples)(model)}


def restore(model: OneGAN, run_dir: Path, restart_unreadable: bool = False, log=print) -> int:
    """The step to start from: the newest checkpoint that restores (rundir.restore_latest), 0
    for a new run. When checkpoints exist and none restores: CheckpointError, or, with
    restart_unreadable, they are moved to checkpoints/damaged/ and the run starts over. The
    learning rates are then the flags' (at that step), not the ones a checkpoint held."""
    try:
        restored = rundir.restore_latest(model, run_dir, log=log)
    except rundir.CheckpointError:
        if not restart_unreadable:
            raise
        rundir.set_aside_checkpoints(run_dir, log=log)
        restored = None
    model.set_learning_rates()
    return restored[0] if restored else 0


def train(config: Config, stream=None, restart_unreadable: bool = False) -> OneGAN:
    """Trains (or resumes) the run in config.run_dir up to config.total_steps.

    Resuming restores the newest checkpoint that loads completely and is finite; when none
    does, it stops with rundir.CheckpointError (restart_unreadable: set them aside, start over).
    A file-system failure stops it with fileio.FileSystemError; the newest complete checkpoint is
    kept and no temporary file is left.

    --strategy=multi_worker: start every worker (TF_CONFIG) with the same flags and the same
    --run_dir on a shared filesystem. Only the chief (worker 0 without a "chief" task) writes
    params.json, checkpoints, samples, stats.jsonl and TensorBoard events; every worker checks its
    flags against config.json (rewriting the same file) and resumes from the chief's newest
    checkpoint.
    """
    stream = stream or sys.stdout
    say = lambda *a: print(*a, file=stream, flush=True)  # noqa: E731
    # The strategy first: MultiWorkerMirroredStrategy must exist before any other TF op.
    strategy = distribute.make_strategy(config.strategy)
    chief = distribute.is_chief()
    # Held-out examples next: bad input fails here, before a model or run dir exists.
    examples = {k: v.numpy() for k, v in
                data.evaluation_batch(config, max(config.eval_examples, 12)).items()}
    data.check_training_data(config)
    run_dir = rundir.prepare(config)
    if chief:
        fileio.remove_stale_temporaries(run_dir, log=say)
    model = build_model(config, strategy)

    counts = parameter_counts(model)
    say("parameters per network: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    step = restore(model, run_dir, restart_unreadable and chief, log=say)
    rundir.save_config(config, run_dir)  # only now: the checkpoints fit this config
    if chief:
        fileio.atomic_write(run_dir / "params.json", json.dumps(counts, indent=2) + "\n")
        rundir.truncate_stats(run_dir, step)
    distribute.check_workers_agree(strategy, config, step)
    if step:
        say(f"resumed from {run_dir / 'checkpoints'} at step {step}")
    if step >= config.total_steps:
        say(f"run already at step {step} >= --total_steps={config.total_steps}; nothing to do")
        return model

    writer = tf.summary.create_file_writer(str(run_dir / "tensorboard")) if chief else None
    samplers = {"generation": generation_sampler(config),
                "reconstruction": reconstruction_sampler(examples),
                "translation": translation_sampler(config, examples)}
    evaluator = None
    if {"mask", "parent", "child"} & set(examples):
        evaluator = lambda model: report.quick_metrics(model.ema, examples)  # noqa: E731
    if "mask" not in examples:
        say(f"--dataset={config.dataset}: no ground-truth masks; segmentation is not evaluated")
    monitor = cb.TrainingMonitor(config, run_dir, samplers, writer, chief, stream, evaluator)
    clone_step = phase_two_start(config)
    started = time.time()
    boundaries = schedule_boundaries(config)
    while step < config.total_steps:
        boundary = next(b for b in boundaries if b > step)
        if clone_step is not None and step >= clone_step and not int(model.clones_loaded.numpy()):
            say(f"step {step}: Phase II starts; discriminator clones loaded")
            model.load_discriminator_clones()
        model.set_paths(active_paths(config, step))
        dataset = distribute.distribute_input(
            data.training_dataset(config, start_step=step), strategy)
        model.fit(dataset, steps_per_epoch=boundary - step, epochs=1, verbose=0, shuffle=False,
                  callbacks=[monitor])
        if monitor.failure:
            last = rundir.list_checkpoints(run_dir)
            kept = f"; last good checkpoint: {last[-1][1]}" if last else ""
            raise cb.NonFiniteLossError(monitor.failure + kept)
        step = int(model.step.numpy())
        if chief:  # refuses (ValueError) to save non-finite weights
            rundir.save_checkpoint(model, run_dir, step, config.keep_checkpoints)
        elif not model.weights_are_finite():  # the same check: every worker stops together
            raise ValueError(f"step {step}: non-finite weights; checkpoint not written")
    where = f"; samples in {run_dir / 'samples'}" if chief else " (the chief writes the files)"
    say(f"done: {step} steps in {time.time() - started:.0f}s{where}")
    return model


def restore_for_inference(run_dir: str | Path, log=print) -> OneGAN:
    """The model of a finished (or interrupted) run, at its newest restorable checkpoint."""
    return restore_checkpoint(run_dir, log=log)[0]


def restore_checkpoint(run_dir: str | Path, log=print) -> tuple[OneGAN, int, Path]:
    """(model, step, checkpoint path) of the newest checkpoint that restores completely and is
    finite. FileNotFoundError without checkpoints; rundir.CheckpointError when none restores."""
    config = rundir.load_config(run_dir)
    model = build_model(config)
    restored = rundir.restore_latest(model, run_dir, log=log)
    if restored is None:
        raise FileNotFoundError(f"--run_dir={run_dir}: no checkpoint to load")
    return (model, *restored)

