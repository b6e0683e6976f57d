"""Fault injection into training and export: kill -9 at random moments (also inside checkpoint and
sample writes), a full disk, a checkpoint that is valid HDF5 but holds a NaN, checkpoints that
do not fit the model, an unusable run directory, missing data and the umask. The slow trials run
the tiny preset in Phase I only (one traced train function). (Stale temporaries:
tests/test_fileio.py; a torn stats line: test_rundir.py.)"""

import io
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from onegan_tf import config as config_lib
from onegan_tf import fileio
from onegan_tf.serving import (
    client,
    savedmodel,
)
from onegan_tf.training import loop, rundir

KILL_TRIALS = 6
STEPS = 8  # inside Phase I of the tiny preset (phase1_steps=10)
TRAIN_FLAGS = ["--flagfile=flags/tiny.flags", f"--total_steps={STEPS}", "--checkpoint_every=1",
               "--log_every=1", "--sample_every=3", "--eval_every=1000"]


def _train_command(run_dir, *extra):
    return [sys.executable, "-m", "onegan_tf.train", *TRAIN_FLAGS, f"--run_dir={run_dir}",
            *extra]


def _temporaries(run_dir):
    return [os.path.join(root, name) for root, _, names in os.walk(run_dir)
            for name in names if name.startswith(".") and ".tmp" in name]


def _loss_steps(run_dir):
    return [r["step"] for r in rundir.read_stats(run_dir) if "gen/total" in r]


def _datasets(path):
    values = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda _, item: values.append(item[()])
                     if isinstance(item, h5py.Dataset) else None)
    return values


def _kill_when(process, run_dir, deadline, in_write: bool):
    """kill -9 `process` as soon as a temporary file appears (in_write) or at `deadline`."""
    while process.poll() is None:
        if time.time() >= deadline or (in_write and _temporaries(run_dir)):
            process.kill()
            break
        time.sleep(0.002)
    process.wait()


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory, subprocess_env, repo_root):
    """KILL_TRIALS training processes killed with SIGKILL (odd ones inside a checkpoint or
    sample write, even ones at a random moment), then one run to the end."""
    run_dir = tmp_path_factory.mktemp("killed") / "run"
    rng = random.Random(0)
    log = []
    for trial in range(KILL_TRIALS):
        process = subprocess.Popen(_train_command(run_dir), cwd=repo_root, env=subprocess_env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _kill_when(process, run_dir, time.time() + rng.uniform(3, 15), in_write=trial % 2 == 1)
        log.append((trial, process.returncode, [s for s, _ in rundir.list_checkpoints(run_dir)]))
    final = subprocess.run(_train_command(run_dir), cwd=repo_root, env=subprocess_env,
                           capture_output=True, text=True, timeout=300)
    return run_dir, log, final


def test_kill_9_at_random_moments_then_resume(killed_run):
    run_dir, log, final = killed_run
    assert final.returncode == 0, (log, final.stderr[-2000:])
    assert f"done: {STEPS} steps" in final.stdout or "nothing to do" in final.stdout
    assert sum(rc == -signal.SIGKILL for _, rc, _ in log) >= KILL_TRIALS // 2, log
    checkpoints = rundir.list_checkpoints(run_dir)
    assert checkpoints[-1][0] == STEPS
    for _, path in checkpoints:  # every kept checkpoint is complete and finite
        values = _datasets(path)
        assert values and all(np.all(np.isfinite(v)) for v in values
                              if np.issubdtype(np.asarray(v).dtype, np.floating))
    assert _temporaries(run_dir) == []
    assert _loss_steps(run_dir) == list(range(1, STEPS + 1)), log  # one record per step


def _limited_file_size(limit_bytes):
    def apply():  # in the child: writes past the limit fail with EFBIG instead of a signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


def test_full_disk_during_training_is_one_error_line(killed_run, tmp_path, subprocess_env,
                                                     repo_root):
    """The run goes on with a file-size limit below a checkpoint's size (about 6 MB): one
    error line, exit 4, no segfault; the checkpoints are intact, no temporary is left."""
    run_dir = shutil.copytree(killed_run[0], tmp_path / "run")
    before = {p: p.read_bytes() for _, p in rundir.list_checkpoints(run_dir)}
    result = subprocess.run(_train_command(run_dir, f"--total_steps={STEPS + 2}"),
                            cwd=repo_root, env=subprocess_env, capture_output=True, text=True,
                            timeout=300, preexec_fn=_limited_file_size(1 << 20))
    assert result.returncode == 4, (result.returncode, result.stderr[-3000:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: cannot write {run_dir}/checkpoints/ckpt-{STEPS + 1:08d}"
                      ".weights.h5: File too large"], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert {p: p.read_bytes() for _, p in rundir.list_checkpoints(run_dir)} == before
    assert _temporaries(run_dir) == []


def test_full_disk_during_export_leaves_nothing(tmp_path, tiny_model):

    base = tmp_path / "export" / "m"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, hard))
    try:
        with pytest.raises(fileio.FileSystemError, match=r"cannot write the export .*m"):
            savedmodel.export_autoencoder(tiny_model.ema, base, log=lambda *_: None)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert sorted(p.name for p in base.parent.iterdir()) == ["m"]  # no temporary directory
    assert list(base.iterdir()) == []


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """A tiny Phase I run with checkpoints at steps 2 and 4 (and its model at step 4)."""
    run_dir = tmp_path_factory.mktemp("faults")
    config = config_lib.preset("tiny", run_dir=str(run_dir), total_steps=4, checkpoint_every=2,
                               sample_every=100, eval_every=100)
    model = loop.train(config, stream=io.StringIO())
    return run_dir, config, model


def _copy(run_dir, target):
    return shutil.copytree(run_dir, target)


def test_checkpoint_with_a_nan_inside_valid_hdf5_falls_back(two_checkpoints, tmp_path):
    source, config, _ = two_checkpoints
    run_dir = _copy(source, tmp_path / "run")
    newest = rundir.list_checkpoints(run_dir)[-1][1]
    with h5py.File(newest, "r+") as f:
        names = []
        f.visititems(lambda name, item: names.append(name)
                     if isinstance(item, h5py.Dataset) and item.dtype.kind == "f"
                     and item.size > 1 else None)
        data = f[names[0]][()]
        data.flat[0] = np.nan
        f[names[0]][...] = data
    messages = []
    model, step, path = loop.restore_checkpoint(run_dir, log=messages.append)
    assert (step, path.name) == (2, "ckpt-00000002.weights.h5")
    assert any("non-finite" in m and newest.name in m for m in messages), messages
    assert rundir.all_finite(rundir.state_variables(model))

    # Export falls back the same way, records that checkpoint and serves its EMA weights.
    from onegan_tf import data
    from onegan_tf.serving import inference
    exported = savedmodel.export_run(run_dir, tmp_path / "export", log=messages.append)
    info = (exported / "assets.extra" / "export.json").read_text()
    assert '"checkpoint": "ckpt-00000002.weights.h5"' in info and '"step": 2' in info
    x = data.evaluation_batch(config, 2)["image"].numpy()
    np.testing.assert_allclose(client.ServedModel(exported)("segment", images=x)["mask"],
                               inference.segment(model.ema, x), atol=1e-5)


def _assert_restore_refused(model, run_dir, match):
    """restore_latest raises CheckpointError matching `match` and leaves the model as it was."""
    initial = [v.numpy() for v in rundir.state_variables(model)]
    with pytest.raises(rundir.CheckpointError, match=match):
        rundir.restore_latest(model, run_dir, log=lambda *_: None)
    for v, value in zip(rundir.state_variables(model), initial, strict=True):
        np.testing.assert_array_equal(v.numpy(), value)


def test_restore_refuses_a_checkpoint_whose_optimizer_state_does_not_fit(tiny_config, tmp_path):
    """A checkpoint whose G/E optimizer also trained Q_p: Keras skips the optimizer's
    variables with a warning and would go on with fresh Adam moments; a resume must refuse."""
    rundir.checkpoint_dir(tmp_path).mkdir(parents=True)
    rundir.save_checkpoint(loop.build_model(tiny_config.replace(mask_parent_info_weight=1.0)),
                           tmp_path, 4, keep=1)
    _assert_restore_refused(loop.build_model(tiny_config), tmp_path,
                            "ckpt-00000004.*g_optimizer")


def test_failed_restore_changes_nothing_and_never_overwrites(two_checkpoints, tmp_path):
    """Checkpoints of another config: CheckpointError naming them, the model as it was, the
    files and config.json untouched; --restart_unreadable moves them aside and starts over."""
    source, config, _ = two_checkpoints
    run_dir = _copy(source, tmp_path / "run")
    (run_dir / "config.json").unlink()  # the guard against changed flags is gone
    files = {p: p.read_bytes() for _, p in rundir.list_checkpoints(run_dir)}
    other = config.replace(run_dir=str(run_dir), gf_dim=6, total_steps=6)
    model = loop.build_model(other)
    _assert_restore_refused(model, run_dir, "ckpt-00000004.*ckpt-00000002")
    assert int(model.step) == 0

    with pytest.raises(rundir.CheckpointError):
        loop.train(other, stream=io.StringIO())
    assert {p: p.read_bytes() for _, p in rundir.list_checkpoints(run_dir)} == files
    assert not (run_dir / "config.json").exists()

    out = io.StringIO()
    trained = loop.train(other.replace(total_steps=1), stream=out,
                              restart_unreadable=True)
    assert int(trained.step) == 1
    damaged = run_dir / "checkpoints" / rundir.DAMAGED_DIR
    assert {p.name: p.read_bytes() for p in damaged.iterdir()} == {
        p.name: data for p, data in files.items()}
    assert [s for s, _ in rundir.list_checkpoints(run_dir)] == [1]


def test_unusable_run_dir_is_one_error_line(tmp_path, subprocess_env, repo_root):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    for run_dir, reason in ((a_file, "File exists"), (a_file / "run", "Not a directory")):
        result = subprocess.run(_train_command(run_dir), cwd=repo_root, env=subprocess_env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 4, result.stderr[-2000:]
        assert result.stderr.strip().splitlines()[-1] == (
            f"error: cannot create the run directory --run_dir={run_dir}: {reason}")
        assert "Traceback" not in result.stderr


def test_files_respect_the_umask(tmp_path, tiny_model):
    previous = os.umask(0o027)
    try:
        fileio.atomic_write(tmp_path / "config.json", "{}\n")
        path = rundir.save_checkpoint(tiny_model, tmp_path, 1, keep=1)
    finally:
        os.umask(previous)
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o640
    assert path.stat().st_mode & 0o777 == 0o640


def test_missing_backgrounds_fail_before_the_run_dir_exists(tmp_path):
    from PIL import Image

    (tmp_path / "data" / "images").mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (40, 40), (200, 30 * i, 0)).save(tmp_path / "data" / "images" / f"{i}.png")
    run_dir = tmp_path / "run"
    config = config_lib.preset("tiny", dataset="folder", data_dir=str(tmp_path / "data"),
                               run_dir=str(run_dir))
    with pytest.raises(FileNotFoundError, match="backgrounds"):
        loop.train(config, stream=io.StringIO())
    assert not run_dir.exists()
