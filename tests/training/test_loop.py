"""End-to-end training: the run directory, resume, damaged checkpoints, config changes, the NaN
guard and the command line (strategies: test_distribution.py, test_multi_worker.py)."""

import dataclasses
import io
import json
import math
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from onegan_tf import config as config_lib
from onegan_tf import fileio
from onegan_tf.training import (
    callbacks,
    distribute,
    loop,
    losses,
    rundir,
)


def _tiny(run_dir, **overrides):
    return config_lib.preset("tiny", run_dir=str(run_dir), **overrides)


def _gen_only(run_dir, **overrides):
    """Tiny config whose whole run is Phase I (one traced train function: fast)."""
    return _tiny(run_dir, phase1_steps=100, fake_recon_start=100, real_recon_start=100,
                 **overrides)


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """train() to step 6 (Phase I), then train() again to 12 in the same run dir: the second call
    resumes at 6, loads the clones at 10 and runs generation + fake reconstruction to 12."""
    run_dir = tmp_path_factory.mktemp("run")
    first_cfg = _tiny(run_dir, total_steps=6)
    first_out = io.StringIO()
    first = loop.train(first_cfg, stream=first_out)
    checkpoints_after_first = [s for s, _ in rundir.list_checkpoints(run_dir)]
    cfg = first_cfg.replace(total_steps=12)  # total_steps may change on resume
    out = io.StringIO()
    model = loop.train(cfg, stream=out)
    return types.SimpleNamespace(
        run_dir=run_dir, cfg=cfg, model=model, out=out.getvalue(), first=first,
        first_out=first_out.getvalue(), checkpoints_after_first=checkpoints_after_first)


def test_run_dir_config_and_params(resumed_run):
    run_dir, cfg, model = resumed_run.run_dir, resumed_run.cfg, resumed_run.model
    assert config_lib.Config.from_json((run_dir / "config.json").read_text()) == cfg
    assert rundir.load_config(run_dir) == cfg
    params = json.loads((run_dir / "params.json").read_text())
    assert set(params) == set(model.networks())
    assert params == {name: net.count_params() for name, net in model.networks().items()}
    assert all(isinstance(v, int) and v > 0 for v in params.values())
    assert "parameters per network: V_bg" in resumed_run.first_out


def _loss_records(run_dir):
    """stats.jsonl lines written by the loss logger (evaluation lines have no loss terms)."""
    return [r for r in rundir.read_stats(run_dir) if "gen/total" in r]


def test_run_dir_stats(resumed_run):
    all_records = rundir.read_stats(resumed_run.run_dir)
    lines = (resumed_run.run_dir / "stats.jsonl").read_text().splitlines()
    assert len(all_records) == len(lines)  # every line is complete JSON
    for record in all_records:
        assert isinstance(record["step"], int)
        for key, value in record.items():
            if key != "paths":
                assert isinstance(value, (int, float)) and math.isfinite(value), (key, value)
    records = _loss_records(resumed_run.run_dir)
    # log_every = 5, plus the last step of each call.
    assert [r["step"] for r in records] == [5, 6, 10, 12]
    assert [r["paths"] for r in records] == ["generation"] * 3 + ["generation+fake"]
    for record in records:
        assert {"gen/total", "D_generation/total", "images_per_second"} <= set(record)
    assert "fake/REC" in records[-1] and "fake/REC" not in records[0]
    # Periodic evaluation on held-out images (eval_every = 15 > 12: the last step of each call).
    evaluations = [r for r in all_records if "eval/iou" in r]
    assert [r["step"] for r in evaluations] == [6, 12]
    for record in evaluations:
        for key in ("eval/iou", "eval/dice", "eval/parent_acc", "eval/parent_nmi",
                    "eval/child_acc", "eval/child_nmi"):
            assert 0.0 <= record[key] <= 1.0, key
        assert 0 < record["eval/seconds"] < 60


def test_run_dir_samples(resumed_run):
    samples = resumed_run.run_dir / "samples"
    names = sorted(p.name for p in samples.iterdir())
    for kind in ("generation", "reconstruction", "translation"):
        # sample_every = 15 > 12: only the last step of each call, plus the latest copy.
        assert {f"{kind}_00000006.png", f"{kind}_00000012.png", f"{kind}_latest.png"} <= set(
            names)
    assert not [n for n in names if n.startswith(".")]  # no temporaries left
    for name in names:
        with Image.open(samples / name) as image:
            image.load()
            assert image.mode == "RGB"
            width, height = image.size
            assert width >= 32 * 8 and height >= 32 * 4  # >= 8 columns, >= 4 rows of 32 px
            pixels = np.asarray(image)
            assert pixels.std() > 0  # not blank
    with Image.open(samples / "generation_latest.png") as latest, \
            Image.open(samples / "generation_00000012.png") as last:
        np.testing.assert_array_equal(np.asarray(latest), np.asarray(last))


def test_run_dir_tensorboard(resumed_run):
    events = sorted((resumed_run.run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    tags, steps = set(), set()
    for path in events:
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.add(value.tag)
                steps.add(event.step)
    assert {"gen/total", "D_generation/total", "images_per_second"} <= tags
    assert {"samples/generation", "samples/reconstruction"} <= tags
    assert {"eval/iou", "eval/parent_acc", "eval/child_nmi", "eval/seconds"} <= tags
    assert {5, 6, 10, 12} <= steps


def test_run_dir_checkpoints(resumed_run):
    assert resumed_run.checkpoints_after_first == [6]
    steps = [s for s, _ in rundir.list_checkpoints(resumed_run.run_dir)]
    assert steps == [6, 10, 12]  # keep_checkpoints = 3
    leftovers = [p.name for p in rundir.checkpoint_dir(resumed_run.run_dir).iterdir()
                 if not rundir._CKPT.match(p.name)]
    assert leftovers == []


def test_resume_continues_from_the_checkpoint(resumed_run):
    assert int(resumed_run.first.step) == 6
    assert "resumed" not in resumed_run.first_out
    out = resumed_run.out
    assert "resumed from" in out and "at step 6" in out
    assert "step 10: Phase II starts" in out
    assert "done: 12 steps" in out
    model = resumed_run.model
    assert int(model.step) == 12
    assert int(model.clones_loaded) == 1
    assert int(model.d_optimizer_fake.iterations) == 2  # steps 10 -> 12
    assert int(model.d_optimizer_real.iterations) == 0


def test_restore_for_inference_matches_the_trained_model(resumed_run):
    restored = loop.restore_for_inference(resumed_run.run_dir)
    assert int(restored.step) == 12
    for a, b in zip(restored.ema.weights, resumed_run.model.ema.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(restored.g_optimizer.variables, resumed_run.model.g_optimizer.variables,
                    strict=True):  # Adam moments are part of the checkpoint
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_damaged_checkpoints_are_skipped(resumed_run, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(resumed_run.run_dir, run_dir)
    ckpts = rundir.checkpoint_dir(run_dir)
    good = ckpts / "ckpt-00000012.weights.h5"
    data = good.read_bytes()
    # kill -9 in the middle of writing: a truncated newer file, and one full of garbage.
    (ckpts / "ckpt-00000013.weights.h5").write_bytes(data[: len(data) // 2])
    (ckpts / "ckpt-00000014.weights.h5").write_bytes(b"\x89HDF\r\n" + b"\0garbage" * 500)
    # An interrupted atomic save leaves a hidden temporary: never a candidate.
    (ckpts / ".ckpt-00000015.tmp.weights.h5").write_bytes(data)
    assert [s for s, _ in rundir.list_checkpoints(run_dir)] == [6, 10, 12, 13, 14]

    out = io.StringIO()
    model = loop.train(dataclasses.replace(resumed_run.cfg, run_dir=str(run_dir)),
                            stream=out)
    text = out.getvalue()
    assert "warning: cannot restore checkpoint" in text
    assert "ckpt-00000014.weights.h5" in text and "ckpt-00000013.weights.h5" in text
    assert text.index("ckpt-00000014") < text.index("ckpt-00000013")  # newest first
    assert "ckpt-00000015" not in text
    assert "at step 12" in text and "nothing to do" in text
    assert int(model.step) == 12
    for a, b in zip(model.autoencoder.weights, resumed_run.model.autoencoder.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_restore_latest_without_checkpoints(tmp_path, tiny_model):
    messages = []
    assert rundir.restore_latest(tiny_model, tmp_path, log=messages.append) is None
    assert messages == []


def test_changed_config_is_refused(resumed_run):
    before = (resumed_run.run_dir / "config.json").read_text()
    with pytest.raises(ValueError, match=r"--gf_dim=6 \(run has 4\)"):
        loop.train(resumed_run.cfg.replace(gf_dim=6), stream=io.StringIO())
    with pytest.raises(ValueError, match="--num_children"):
        loop.train(resumed_run.cfg.replace(num_children=13), stream=io.StringIO())
    assert (resumed_run.run_dir / "config.json").read_text() == before  # left alone


def test_nan_guard_stops_before_checkpointing(tmp_path, monkeypatch):
    """L_RM turns NaN from the 5th train step on: the run stops at step 5 naming the term, and the
    newest checkpoint is the last good one (step 4)."""
    calls = tf.Variable(0, dtype=tf.int64, trainable=False)
    original = losses.mask_regularizer

    def poisoned(mask, area_min, area_max):
        calls.assign_add(1)  # once per train step (generation path only)
        value = original(mask, area_min, area_max)
        return tf.where(calls >= 5, tf.constant(float("nan")), value)

    monkeypatch.setattr(losses, "mask_regularizer", poisoned)
    cfg = _gen_only(tmp_path / "nan", total_steps=12, checkpoint_every=2, log_every=1)
    out = io.StringIO()
    with pytest.raises(callbacks.NonFiniteLossError) as info:
        loop.train(cfg, stream=out)
    message = str(info.value)
    assert "gen/R_M" in message and "at step 5" in message
    assert "ckpt-00000004.weights.h5" in message  # last good checkpoint named
    assert [s for s, _ in rundir.list_checkpoints(cfg.run_dir)] == [2, 4]
    records = _loss_records(cfg.run_dir)
    assert [r["step"] for r in records] == [1, 2, 3, 4]  # nothing logged for the bad step
    assert all(math.isfinite(r["gen/R_M"]) for r in records)


def test_cli_trains_end_to_end(tmp_path, subprocess_env, repo_root):
    flagfile = repo_root / "flags" / "tiny.flags"
    if not flagfile.exists():
        flagfile.parent.mkdir(exist_ok=True)
        flagfile.write_text("--preset=tiny\n")
    run_dir = tmp_path / "cli_run"
    # Three steps keep the run inside Phase I (one traced train function).
    result = subprocess.run(
        [sys.executable, "-m", "onegan_tf.train", f"--flagfile={flagfile}",
         f"--run_dir={run_dir}", "--total_steps=3"],
        capture_output=True, text=True, env=subprocess_env, cwd=repo_root, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "done: 3 steps" in result.stdout
    cfg = rundir.load_config(run_dir)
    assert cfg == config_lib.preset("tiny", run_dir=str(run_dir), total_steps=3)
    assert [s for s, _ in rundir.list_checkpoints(run_dir)] == [3]
    samples = {p.name for p in (run_dir / "samples").iterdir()}
    assert {"generation_00000003.png", "reconstruction_00000003.png"} <= samples
    assert [r["step"] for r in _loss_records(run_dir)] == [3]


def test_cli_rejects_bad_flags(tmp_path, subprocess_env, repo_root):
    result = subprocess.run(
        [sys.executable, "-m", "onegan_tf.train", "--flagfile=flags/tiny.flags",
         "--dataset=nope", f"--run_dir={tmp_path / 'bad'}"],
        capture_output=True, text=True, env=subprocess_env, cwd=repo_root, timeout=120)
    assert result.returncode != 0
    assert "--dataset='nope'" in result.stderr
    assert not (tmp_path / "bad").exists()  # nothing created for an invalid config


def test_rundir_stats_survive_a_torn_line(tmp_path):
    rundir.append_stats(tmp_path, {"step": 1, "gen/total": 2.5})
    rundir.append_stats(tmp_path, {"step": 2, "gen/total": 2.0})
    with open(tmp_path / "stats.jsonl", "a") as f:
        f.write('{"step": 3, "gen/to')  # killed mid-append
    assert rundir.read_stats(tmp_path) == [{"step": 1, "gen/total": 2.5},
                                           {"step": 2, "gen/total": 2.0}]
    assert rundir.read_stats(tmp_path / "missing") == []


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "config.json"
    fileio.atomic_write(target, "old\n")

    class Boom:  # not str/bytes: the write itself fails after the temporary was created
        pass

    with pytest.raises(TypeError):
        fileio.atomic_write(target, Boom())
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    fileio.atomic_write(target, b"new")
    assert target.read_bytes() == b"new"


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
