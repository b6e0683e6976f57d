"""Keras callbacks of a training run: progress, logs, NaN guard, sample grids, checkpoints."""

from __future__ import annotations

import math
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from onegan_tf.evaluation import grids
from onegan_tf.training import rundir


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN/Inf; the message names the term and the step."""


class TrainingMonitor(keras.callbacks.Callback):
    """Everything a run does between steps, keyed on the model's global step.

    * stops at the first non-finite loss term (no checkpoint is written after it);
    * every `log_every` steps: window means of every term to TensorBoard and stats.jsonl,
      and a progress line;
    * every `sample_every` steps: PNG grids under samples/ (+ TensorBoard images);
    * every `checkpoint_every` steps: an atomic checkpoint.
    """

    def __init__(self, config, run_dir, samplers, writer=None, is_chief=True, stream=None,
                 evaluator=None):
        super().__init__()
        self.config, self.run_dir = config, run_dir
        self.samplers = samplers  # name -> fn(model) -> uint8 grid
        self.evaluator = evaluator  # fn(model) -> dict of metrics, or None
        self.writer, self.is_chief = writer, is_chief
        self.stream = stream or sys.stdout
        self.failure = None
        self._sums, self._count = {}, 0
        self._last_time, self._last_step = time.time(), None
        self.start_time = time.time()

    # --- per step ---------------------------------------------------------------------------
    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.step.numpy())
        values = {k: float(v) for k, v in (logs or {}).items()}
        bad = sorted(k for k, v in values.items() if not math.isfinite(v))
        if bad:
            # Name a leaf term (a total is non-finite because one of its terms is).
            name = next((k for k in bad if not k.endswith("total")), bad[0])
            self.failure = f"non-finite loss {name} = {values[name]} at step {step}"
            self.model.stop_training = True
            return
        for k, v in values.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._count += 1
        self._last_step = step
        cfg = self.config
        if step % cfg.log_every == 0 or step == cfg.total_steps:
            self.log(step)
        if self.is_chief and (step % cfg.sample_every == 0 or step == cfg.total_steps):
            self.write_samples(step)
        if self.evaluator and self.is_chief and (
                step % cfg.eval_every == 0 or step == cfg.total_steps):
            self.evaluate(step)
        if step % cfg.checkpoint_every == 0:
            self.checkpoint(step)  # every worker checks the weights; the chief writes

    def on_train_end(self, logs=None):
        # Paths change only between fit() calls: close the window so no record mixes two.
        if self._count and not self.failure:
            self.log(self._last_step)

    # --- actions --------------------------------------------------------------------------------
    def log(self, step):
        if not self._count:
            return
        means = {k: v / self._count for k, v in self._sums.items()}
        now = time.time()
        steps = self._count
        rate = steps * self.config.batch_size / max(now - self._last_time, 1e-9)
        self._sums, self._count, self._last_time = {}, 0, now
        record = {"step": step, "images_per_second": rate, "paths": "+".join(self.model.paths),
                  "wall_time": now - self.start_time, **means}
        if self.is_chief:
            rundir.append_stats(self.run_dir, record)
            if self.writer is not None:
                with self.writer.as_default(step=step):
                    for k, v in means.items():
                        tf.summary.scalar(k, v)
                    tf.summary.scalar("images_per_second", rate)
        self.progress(step, rate, means)

    def progress(self, step, rate, means):
        total = self.config.total_steps
        done = step / max(total, 1)
        width = 24
        bar = "#" * int(done * width) + "-" * (width - int(done * width))
        eta = (total - step) * self.config.batch_size / max(rate, 1e-9)
        keys = [("D", "D_generation/total"), ("G", "gen/total"), ("mask", "gen/mask_area"),
                ("rec_fake", "fake/REC"), ("rec_real", "real/REC")]
        shown = " ".join(f"{label} {means[k]:.3f}" for label, k in keys if k in means)
        print(f"[{bar}] {step}/{total} {'+'.join(self.model.paths)} {rate:.1f} img/s "
              f"ETA {int(eta) // 60}:{int(eta) % 60:02d} | {shown}", file=self.stream,
              flush=True)

    def evaluate(self, step):
        started = time.time()
        results = self.evaluator(self.model)
        # Its cost is logged so the overhead of --eval_every is visible (stats.jsonl, TB).
        results["eval/seconds"] = time.time() - started
        rundir.append_stats(self.run_dir, {"step": step, **results})
        if self.writer is not None:
            with self.writer.as_default(step=step):
                for k, v in results.items():
                    tf.summary.scalar(k, v)
        print(f"step {step} evaluation: " + " ".join(
            f"{k.split('/')[-1]} {v:.3f}" for k, v in results.items()), file=self.stream,
            flush=True)

    def write_samples(self, step):
        for name, sampler in self.samplers.items():
            grid = sampler(self.model)
            grids.save_png(self.run_dir / "samples" / f"{name}_{step:08d}.png", grid)
            grids.save_png(self.run_dir / "samples" / f"{name}_latest.png", grid)
            if self.writer is not None:
                with self.writer.as_default(step=step):
                    tf.summary.image(f"samples/{name}", grid[None], step=step)

    def checkpoint(self, step):
        if not self.model.weights_are_finite():
            self.failure = f"non-finite weights after step {step}"
            self.model.stop_training = True
            return
        if self.is_chief:
            rundir.save_checkpoint(self.model, self.run_dir, step, self.config.keep_checkpoints)


def fixed_generation_inputs(config, columns: int = 12):
    """Child codes spread over [0, N_C) and fixed z: the same grid at every sample step."""
    columns = min(columns, max(config.num_children, 8))
    child = np.round(np.linspace(0, config.num_children - 1, columns)).astype(np.int32)
    if config.num_children < columns:
        child = np.arange(columns, dtype=np.int32) % config.num_children
    z = np.random.default_rng(config.seed + 1).standard_normal((columns, config.z_dim))
    return tf.constant(child), tf.constant(z.astype(np.float32))
