"""--strategy=multi_worker: two worker processes (TF_CONFIG, 127.0.0.1 ports) train the tiny
preset with MultiWorkerMirroredStrategy: 3 steps of Phase I, then a resumed run whose step 4 loads
the discriminator clones and runs all three paths.

Checked: both exit 0 with identical weights; only the chief writes checkpoints, samples, stats
and TensorBoard events; each worker trains on its half of the global batch, and the first step's
losses are those of one process on the whole global batch (same initial weights); a resumed run
with every worker on the chief's (shared) run dir continues from its checkpoint; workers that
would resume from different steps stop with an error instead of waiting on each other.

Run dirs: on a shared filesystem every worker gets the same --run_dir (the chief writes there,
every worker resumes from it). The first run gives each worker its own dir, so that the test can
see that the non-chief writes nothing (its dir holds only config.json).
"""

import io
import json
import socket
import subprocess
import sys
import types

import keras
import numpy as np
import pytest

from onegan_tf import config as config_lib
from onegan_tf import data
from onegan_tf.training import loop, rundir

SCRIPT = "tests/scripts/multi_worker.py"
# Steps 1-3: Phase I (one traced step function: each phase costs a trace); from step 4: the
# clones are loaded and all three paths run.
SCHEDULE = dict(phase1_steps=3, fake_recon_start=3, real_recon_start=3, log_every=1,
                checkpoint_every=2, sample_every=3)
FLAGS = ["--preset=tiny", "--strategy=multi_worker", *(f"--{k}={v}" for k, v in SCHEDULE.items())]
TIMEOUT = 240  # per run of the two workers; a hang (a lost collective) fails the test


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _run_workers(tmp, env, root, run_dirs, extra_flags, tag):
    """Starts worker 0 (the chief) and worker 1, waits for both; returns their outcomes."""
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs, outs = [], []
    for index, run_dir in enumerate(run_dirs):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        log = open(tmp / f"{tag}_worker{index}.log", "w+")
        args = [sys.executable, SCRIPT, *FLAGS, *extra_flags, f"--run_dir={run_dir}",
                f"--weights_out={tmp / f'{tag}_weights{index}.npz'}",
                f"--batch_out={tmp / f'{tag}_batch{index}.npz'}"]
        procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=root,
                                      env=dict(env, TF_CONFIG=json.dumps(tf_config))))
        outs.append(log)
    try:
        codes = [p.wait(timeout=TIMEOUT) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        logs = [(log.seek(0), log.read()[-2000:])[1] for log in outs]
        pytest.fail(f"{tag}: the workers did not finish in {TIMEOUT}s:\n" + "\n---\n".join(logs))
    workers = []
    for index, (code, log) in enumerate(zip(codes, outs)):
        log.seek(0)
        text = log.read()
        log.close()
        result = None
        lines = [x for x in text.splitlines() if x.startswith("RESULT ")]
        if lines:
            result = json.loads(lines[-1][len("RESULT "):])
        workers.append(types.SimpleNamespace(
            code=code, log=text, result=result,
            weights=tmp / f"{tag}_weights{index}.npz", batch=tmp / f"{tag}_batch{index}.npz"))
    return workers


def _assert_ok(workers):
    for index, worker in enumerate(workers):
        assert worker.code == 0, f"worker {index} exited {worker.code}:\n{worker.log[-3000:]}"


def _weights(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, subprocess_env, repo_root):
    tmp = tmp_path_factory.mktemp("multi_worker")
    run_dirs = [tmp / "chief_run", tmp / "worker1_run"]
    first = _run_workers(tmp, subprocess_env, repo_root, run_dirs, ["--total_steps=3"], "first")
    return types.SimpleNamespace(tmp=tmp, env=subprocess_env, root=repo_root,
                                 run_dirs=run_dirs, first=first)


def test_two_workers_train_and_agree_on_the_weights(cluster):
    _assert_ok(cluster.first)
    chief, other = (w.result for w in cluster.first)
    assert chief["chief"] and not other["chief"]
    for result in (chief, other):
        assert result["multi_worker"] and result["replicas"] == 2
        assert result["step"] == 3 and result["paths"] == ["generation"]
    a, b = (_weights(w.weights) for w in cluster.first)
    assert a.keys() == b.keys() and len(a) > 100
    assert all(np.array_equal(a[k], b[k]) for k in a), [k for k in a
                                                         if not np.array_equal(a[k], b[k])]
    assert all(np.isfinite(v).all() for v in a.values() if v.dtype.kind == "f")


def test_only_the_chief_writes_to_its_run_dir(cluster):
    _assert_ok(cluster.first)
    chief_dir, other_dir = cluster.run_dirs
    assert [s for s, _ in rundir.list_checkpoints(chief_dir)] == [2, 3]
    assert {"generation_00000003.png", "reconstruction_00000003.png",
            "translation_00000003.png"} <= {p.name for p in (chief_dir / "samples").iterdir()}
    assert len(list((chief_dir / "tensorboard").iterdir())) == 1
    assert (chief_dir / "params.json").exists()
    records = [r for r in rundir.read_stats(chief_dir) if "gen/total" in r]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert [r["step"] for r in rundir.read_stats(chief_dir) if "eval/iou" in r] == [3]
    # The non-chief checked its flags against config.json and wrote nothing else.
    assert sorted(p.name for p in other_dir.iterdir()) == ["config.json"]


def test_each_worker_gets_its_half_of_the_global_batch(cluster):
    _assert_ok(cluster.first)
    cfg = config_lib.preset("tiny")
    batch = next(iter(data.training_dataset(cfg)))  # the global batch of step 1, one process
    halves = [dict(np.load(w.batch)) for w in cluster.first]
    assert [w.result["local_batch"] for w in cluster.first] == [cfg.batch_size // 2] * 2
    for key in ("image", "background"):
        np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]),
                                      batch[key].numpy())


def test_first_step_losses_match_one_process_on_the_global_batch(cluster):
    """Same initial weights (seeded as in the script; the chief's are broadcast), the same global
    batch and the same random draws per example: the step-1 losses logged by the chief equal
    those of one process (averaging the two replicas' means = the mean over the global batch)."""
    _assert_ok(cluster.first)
    ref_dir = cluster.tmp / "reference_run"
    cfg = config_lib.preset("tiny", run_dir=str(ref_dir), total_steps=1, **SCHEDULE)
    keras.utils.set_random_seed(cfg.seed)
    loop.train(cfg, stream=io.StringIO())
    (reference,) = [r for r in rundir.read_stats(ref_dir) if "gen/total" in r]
    (distributed,) = [r for r in rundir.read_stats(cluster.run_dirs[0])
                      if "gen/total" in r and r["step"] == 1]
    terms = [k for k in reference if k.startswith(("gen/", "D_generation/"))]
    assert len(terms) > 10
    for key in terms:
        assert distributed[key] == pytest.approx(reference[key], rel=1e-4, abs=1e-6), key


def test_resume_with_every_worker_on_the_shared_run_dir(cluster):
    """The usual layout on a shared filesystem: one --run_dir for all. Both workers resume from
    the chief's checkpoint at step 3, load the discriminator clones and run step 4 with all three
    paths; the weights still agree and the non-chief still writes nothing (no second record)."""
    _assert_ok(cluster.first)
    chief_dir = cluster.run_dirs[0]
    workers = _run_workers(cluster.tmp, cluster.env, cluster.root, [chief_dir, chief_dir],
                           ["--total_steps=4"], "resume")
    _assert_ok(workers)
    for worker in workers:
        assert "at step 3" in worker.log and "discriminator clones loaded" in worker.log
        assert worker.result["step"] == 4 and worker.result["clones_loaded"] == 1
        assert worker.result["paths"] == ["generation", "fake", "real"]
    a, b = (_weights(w.weights) for w in workers)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    records = [r for r in rundir.read_stats(chief_dir) if "gen/total" in r]
    assert [r["step"] for r in records] == [1, 2, 3, 4]  # one writer: no duplicates
    assert records[-1]["paths"] == "generation+fake+real"
    assert all(np.isfinite(v) for k, v in records[-1].items() if "/" in k)
    assert [s for s, _ in rundir.list_checkpoints(chief_dir)] == [2, 3, 4]
    assert len(list((chief_dir / "tensorboard").iterdir())) == 2  # one per run of the chief


def test_workers_resuming_from_different_steps_stop_with_an_error(cluster):
    """Worker 1's own run dir has no checkpoint while the chief's has: rather than run
    different numbers of collective steps (a hang), both stop with a message."""
    _assert_ok(cluster.first)
    workers = _run_workers(cluster.tmp, cluster.env, cluster.root, cluster.run_dirs,
                           ["--total_steps=6"], "mismatch")
    for worker in workers:
        assert worker.code != 0
        assert "the workers restored different steps" in worker.log, worker.log[-3000:]
    assert max(s for s, _ in rundir.list_checkpoints(cluster.run_dirs[0])) < 6
