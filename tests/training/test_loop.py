"""Tests for onegan_tf/training/loop.py, the training driver, end to end: the run directory it
writes, resume (also across the Phase II boundary), damaged checkpoints, config changes, and
the schedule that splits a run into one fit() per segment. (The NaN guard:
test_callbacks.py; strategies: test_distribute.py, test_multi_worker.py; the command line:
tests/test_train.py.)"""

import dataclasses
import io
import json
import math
import shutil
import types

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from onegan_tf import config as config_lib
from onegan_tf.training import loop, rundir
from onegan_tf.training.trainer import active_paths, phase_two_start

GEN, FAKE, REAL = "generation", "fake", "real"


def _tiny(run_dir, **overrides):
    return config_lib.preset("tiny", run_dir=str(run_dir), **overrides)


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


def test_restore_takes_the_flags_learning_rates_not_the_checkpoints(resumed_run, tmp_path):
    """--lr_decay_steps may change on resume: the rates follow the flags at the restored step,
    both ways (the checkpoint at step 12 holds the full rates)."""
    run_dir = tmp_path / "copy"
    shutil.copytree(resumed_run.run_dir, run_dir)
    decayed = resumed_run.cfg.replace(run_dir=str(run_dir), lr_decay_steps=12)
    model = loop.build_model(decayed)
    assert loop.restore(model, run_dir) == 12  # the last step: factor 0
    assert [float(o.learning_rate) for o in model.trained_optimizers()] == [0.0] * 4
    rundir.save_checkpoint(model, tmp_path / "decayed", 12, keep=1)
    plain = loop.build_model(resumed_run.cfg)
    assert loop.restore(plain, tmp_path / "decayed") == 12
    np.testing.assert_allclose([float(o.learning_rate) for o in plain.trained_optimizers()],
                               [resumed_run.cfg.learning_rate] * 4, rtol=1e-6)


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


def test_changed_config_is_refused(resumed_run):
    before = (resumed_run.run_dir / "config.json").read_text()
    with pytest.raises(ValueError, match=r"--gf_dim=6 \(run has 4\)"):
        loop.train(resumed_run.cfg.replace(gf_dim=6), stream=io.StringIO())
    with pytest.raises(ValueError, match="--num_children"):
        loop.train(resumed_run.cfg.replace(num_children=13), stream=io.StringIO())
    assert (resumed_run.run_dir / "config.json").read_text() == before  # left alone


# --- the phase schedule: one fit() per segment, resume across the Phase II boundary ---------
def _pair_weights(model, path):
    return [w.numpy().copy() for net in model.discriminator_pairs()[path] for w in net.weights]


def _distance(a, b):
    return sum(float(np.abs(x - y).sum()) for x, y in zip(a, b, strict=True))


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_schedule_boundaries_and_active_paths_at_boundaries():
    gen, fake, real = (GEN,), (GEN, FAKE), (GEN, FAKE, REAL)
    tiny = config_lib.preset("tiny")
    assert loop.schedule_boundaries(tiny) == [10, 20, 30]
    assert [active_paths(tiny, s) for s in (0, 9, 10, 19, 20, 29, 10**6)] == [
        gen, gen, fake, fake, real, real, real]
    assert loop.schedule_boundaries(tiny.replace(total_steps=12)) == [10, 12]
    assert loop.schedule_boundaries(tiny.replace(total_steps=5)) == [5]
    assert loop.schedule_boundaries(tiny.replace(multi_phase=False)) == [10, 20, 30]
    split = tiny.replace(phase1_steps=6, fake_recon_start=8, real_recon_start=8)
    assert loop.schedule_boundaries(split) == [6, 8, 30]
    assert [active_paths(split, s) for s in (5, 6, 7, 8)] == [gen, gen, gen, real]
    # Phase II (the clones) starts at 10, the fake reconstruction only at 12.
    gap = tiny.replace(fake_recon_start=12)
    assert phase_two_start(gap) == 10 and loop.schedule_boundaries(gap) == [10, 12, 20, 30]
    assert [active_paths(gap, s) for s in (9, 10, 11, 12, 19, 20, 10**6)] == [
        gen, gen, gen, fake, fake, real, real]
    # Whatever the configuration, paths change (and clones load) only at a boundary, so that
    # train() can run one fit() per segment with fixed paths.
    configs = [tiny, split, gap, tiny.replace(real_recon=False), tiny.replace(multi_phase=False),
               tiny.replace(phase1_only=True), tiny.replace(total_steps=15),
               tiny.replace(phase1_steps=0, fake_recon_start=0, real_recon_start=0),
               tiny.replace(phase1_steps=3, fake_recon_start=11, real_recon_start=29)]
    for c in configs:
        bounds = loop.schedule_boundaries(c)
        assert bounds == sorted(set(bounds)) and bounds[-1] == c.total_steps
        for s in range(1, c.total_steps):
            if active_paths(c, s) != active_paths(c, s - 1) or s == phase_two_start(c):
                assert s in bounds, (c, s)


def _training_records(run_dir):
    """stats.jsonl lines written by the training log (other lines, e.g. evaluations, have no
    'paths')."""
    return [r for r in rundir.read_stats(run_dir) if "paths" in r]


def _train(config, monkeypatch):
    """loop.train, its model run eagerly (tracing the three-path step costs more than the
    few steps these tests run); returns (model, printed text)."""
    build = loop.build_model

    def eager_build(*args, **kwargs):
        built = build(*args, **kwargs)
        built.run_eagerly = True
        return built

    monkeypatch.setattr(loop, "build_model", eager_build)
    stream = io.StringIO()
    trained = loop.train(config, stream=stream)
    return trained, stream.getvalue()


def test_resume_across_the_phase_two_boundary(tmp_path, monkeypatch):
    base = config_lib.preset(
        "tiny", batch_size=2, phase1_steps=2, fake_recon_start=2, real_recon_start=3,
        log_every=1, sample_every=1000, checkpoint_every=1000, keep_checkpoints=5,
        run_dir=str(tmp_path / "run"))
    # Run 1 stops inside Phase I.
    first, text = _train(base.replace(total_steps=1), monkeypatch)
    assert int(first.step.numpy()) == 1 and int(first.clones_loaded.numpy()) == 0
    assert "Phase II starts" not in text
    # Run 2 resumes and crosses both boundaries (clones + fake at 2, real at 3).
    second, text = _train(base.replace(total_steps=4), monkeypatch)
    assert "resumed" in text and "at step 1" in text
    assert text.count("Phase II starts") == 1 and "step 2: Phase II starts" in text
    assert int(second.step.numpy()) == 4
    assert int(second.clones_loaded.numpy()) == 1
    assert [int(o.iterations.numpy()) for o in second.d_optimizers().values()] == [4, 2, 1]
    assert not _same(_pair_weights(second, GEN), _pair_weights(second, FAKE))
    stats = _training_records(base.run_dir)
    assert [r["step"] for r in stats] == [1, 2, 3, 4]
    # Record k logs the step k-1 -> k, trained with active_paths(k - 1).
    assert [r["paths"] for r in stats] == [
        "generation", "generation", "generation+fake", "generation+fake+real"]
    assert "fake/REC" not in stats[1] and "fake/REC" in stats[2] and "real/REC" in stats[3]
    assert [s for s, _ in rundir.list_checkpoints(base.run_dir)] == [1, 2, 3, 4]
    fake_at_4, generation_at_4 = _pair_weights(second, FAKE), _pair_weights(second, GEN)
    # Run 3 resumes inside Phase II: clones_loaded comes back from the checkpoint, so the
    # trained clones are not overwritten by D_bg/D_c again.
    third, text = _train(base.replace(total_steps=5), monkeypatch)
    assert "Phase II starts" not in text
    assert int(third.step.numpy()) == 5 and int(third.clones_loaded.numpy()) == 1
    stats = _training_records(base.run_dir)
    assert [r["step"] for r in stats] == [1, 2, 3, 4, 5]
    assert stats[-1]["paths"] == "generation+fake+real"
    # The fake clone of step 4 was restored and trained one more step: it is nearer its step-4
    # self than the step-4 D_bg/D_c it would have been reset to (one step apart, were it reset;
    # measured: 0.86 vs 4.1).
    fake_at_5 = _pair_weights(third, FAKE)
    assert _distance(fake_at_5, fake_at_4) < 0.5 * _distance(fake_at_5, generation_at_4)
