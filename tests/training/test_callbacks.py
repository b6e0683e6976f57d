"""Tests for onegan_tf/training/callbacks.py: the NaN guard of the training monitor, in a short
training run. (What the monitor writes, stats, samples, TensorBoard and evaluations, is checked
on a whole run in test_loop.py.)"""

import io
import math

import pytest
import tensorflow as tf

from onegan_tf import config as config_lib
from onegan_tf.training import callbacks, loop, losses, rundir


def test_nan_guard_stops_before_checkpointing(tmp_path, monkeypatch):
    """L_RM turns NaN from the 5th train step on: the run stops at step 5 naming the term, and the
    newest checkpoint is the last good one (step 4)."""
    calls = tf.Variable(0, dtype=tf.int64, trainable=False)
    original = losses.mask_regularizer

    def poisoned(mask, *area_bounds):
        calls.assign_add(1)  # once per train step (generation path only)
        value = original(mask, *area_bounds)
        return tf.where(calls >= 5, tf.constant(float("nan")), value)

    monkeypatch.setattr(losses, "mask_regularizer", poisoned)
    # Phase I only (one traced train function: fast).
    cfg = config_lib.preset("tiny", run_dir=str(tmp_path / "nan"), phase1_steps=100,
                            fake_recon_start=100, real_recon_start=100, total_steps=12,
                            checkpoint_every=2, log_every=1)
    out = io.StringIO()
    with pytest.raises(callbacks.NonFiniteLossError) as info:
        loop.train(cfg, stream=out)
    message = str(info.value)
    assert "gen/R_M" in message and "at step 5" in message
    assert "ckpt-00000004.weights.h5" in message  # last good checkpoint named
    assert [s for s, _ in rundir.list_checkpoints(cfg.run_dir)] == [2, 4]
    records = [r for r in rundir.read_stats(cfg.run_dir) if "gen/total" in r]
    assert [r["step"] for r in records] == [1, 2, 3, 4]  # nothing logged for the bad step
    assert all(math.isfinite(r["gen/R_M"]) for r in records)
