"""tf.distribute: the same global batch on 1 and on 2 replicas gives the same update."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_one_and_two_replicas_give_the_same_updated_weights():
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "scripts" / "replica_equivalence.py")],
        capture_output=True, text=True, env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["step_one"] == report["step_two"] == 1
    # Both runs moved the weights, by the same amount (SGD: any loss-scale error would show
    # as a factor on every update).
    assert report["max_update"] > 1e-3
    assert report["max_weight_diff"] < 1e-4 * max(1.0, report["max_update"])
    assert abs(report["loss_one"] - report["loss_two"]) < 1e-4 * abs(report["loss_one"])
