"""Tests for onegan_tf/training/distribute.py: which worker is the chief, and tf.distribute giving
the same update for the same global batch on 1 and on 2 replicas. (Two worker processes:
test_multi_worker.py.)"""

import json
import subprocess
import sys

import pytest

from onegan_tf.training import distribute


def test_one_and_two_replicas_give_the_same_updated_weights(repo_root, subprocess_env):
    """In its own process: 2 logical CPUs must be configured before TF initialises devices."""
    result = subprocess.run(
        [sys.executable, str(repo_root / "tests" / "scripts" / "replica_equivalence.py")],
        capture_output=True, text=True, env=subprocess_env, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["step_one"] == report["step_two"] == 1
    # Both runs moved the weights, by the same amount (SGD: any loss-scale error would show
    # as a factor on every update; float rounding alone leaves about 4e-6 of it).
    assert report["max_update"] > 1e-3
    assert report["max_weight_diff"] < 1e-4 * report["max_update"]
    assert abs(report["loss_one"] - report["loss_two"]) < 1e-4 * abs(report["loss_one"])


@pytest.mark.parametrize("tf_config, chief", [
    (None, True),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}, True),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}, False),
    ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}},
     False),
    ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}},
     True),
])
def test_is_chief(monkeypatch, tf_config, chief):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert distribute.is_chief() is chief


def test_importing_the_package_runs_no_tensorflow_op(subprocess_env):
    """MultiWorkerMirroredStrategy must configure collective ops before TensorFlow's context
    starts; a TF op at import time (e.g. a module-level tf.constant) would start it. Imports
    every module, then a setting that may only change before the context starts."""
    script = (
        "import importlib, pkgutil, onegan_tf\n"
        "for m in pkgutil.walk_packages(onegan_tf.__path__, 'onegan_tf.'):\n"
        "    importlib.import_module(m.name)\n"
        "import tensorflow as tf\n"
        "tf.config.threading.set_inter_op_parallelism_threads(2)  # RuntimeError once started\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=subprocess_env, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
