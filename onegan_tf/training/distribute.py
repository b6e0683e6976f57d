"""tf.distribute helpers: the strategy named by --strategy, the one test for multi-worker mode,
the chief, DATA auto-sharding of the training stream, and the check that all workers resume
alike."""

from __future__ import annotations

import dataclasses
import json
import os
import zlib

import tensorflow as tf

from onegan_tf.config import Config


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """MultiWorkerMirroredStrategy over a cluster of more than one worker (TF_CONFIG)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    jobs = strategy.cluster_resolver.cluster_spec().as_dict()
    return len(jobs.get("chief", [])) + len(jobs.get("worker", [])) > 1


def is_chief() -> bool:
    """The chief (or worker 0 when there is no chief) writes files in multi-worker training."""
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = tf_config.get("task") or {}
    if not task or task.get("type") == "chief":
        return True
    has_chief = "chief" in tf_config.get("cluster", {})
    return task.get("type") == "worker" and task.get("index", 0) == 0 and not has_chief


def distribute_input(dataset: tf.data.Dataset, strategy: tf.distribute.Strategy):
    """The training stream as `fit` should see it under `strategy`.

    Each element of `data.training_dataset` is a GLOBAL batch, a pure function of (seed, step).
    Across workers it is split by DATA auto-sharding: every worker builds the same global batch
    and keeps its own replicas' slices, so worker k trains on the examples that replica k gets
    in one process (the split `OneGAN._draw` uses for the random numbers). TF's default (AUTO)
    would shard file-based pipelines (TFDS) by FILE: each worker would read other files, the
    batches would depend on the number of workers, and fewer files than workers is an error.
    The price: every worker decodes the whole global batch. Single-process: unchanged.
    """
    if not is_multi_worker(strategy):
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return dataset.with_options(options)


def check_workers_agree(strategy: tf.distribute.Strategy, config: Config, step: int):
    """Multi-worker: every worker must train the same config from the same restored step.

    Workers that resumed at different steps would run different numbers of collective steps
    (the one ahead waits for ever), and differing flags would train different models. Raises
    ValueError on every worker (the comparison is gathered, so all of them see it).
    """
    if not is_multi_worker(strategy):
        return
    fingerprint = zlib.crc32(dataclasses.replace(config, run_dir="").to_json().encode())
    local = tf.constant([[step, fingerprint]], tf.int64)
    values = strategy.experimental_distribute_values_from_function(lambda _: local)
    table = strategy.gather(values, axis=0).numpy()
    if len({int(s) for s in table[:, 0]}) > 1:
        raise ValueError(
            f"--run_dir={config.run_dir}: the workers restored different steps "
            f"{[int(s) for s in table[:, 0]]}; give every worker the same --run_dir on a shared "
            "filesystem (the chief writes the checkpoints, every worker resumes from them)")
    if len({int(f) for f in table[:, 1]}) > 1:
        raise ValueError("the workers were started with different flags (only --run_dir may "
                         "differ); start every worker with the same flags")
