"""--jit_compile: the training step compiled with XLA trains the tiny preset on CPU with all
three paths (one XLA compilation; the Phase I and Phase II steps are subsets of that graph and
are not compiled separately, to keep the suite short), with the object's pose from z on, as the
built-in presets have it."""

import io

import numpy as np

from onegan_tf import config as config_lib
from onegan_tf.training import loop, rundir


def test_jit_compile_trains_every_path(tmp_path):
    # Every path from step 0 (clones loaded at the start).
    cfg = config_lib.preset(
        "tiny", run_dir=str(tmp_path), jit_compile=True, total_steps=3, phase1_steps=0,
        fake_recon_start=0, real_recon_start=0, log_every=1, sample_every=100,
        checkpoint_every=1, eval_every=100, pose_rotation=180.0, pose_scale=1.35,
        pose_shift=0.25)
    assert cfg.object_pose
    out = io.StringIO()
    model = loop.train(cfg, stream=out)
    assert model.jit_compile is True
    assert "done: 3 steps" in out.getvalue()

    records = [r for r in rundir.read_stats(tmp_path) if "gen/total" in r]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert [r["paths"] for r in records] == ["generation+fake+real"] * 3
    assert all("fake/REC" in r and "real/REC" in r for r in records)
    for record in records:
        losses = {k: v for k, v in record.items() if "/" in k}
        assert len(losses) > 10 and all(np.isfinite(v) for v in losses.values()), record

    # Each optimizer stepped once per step of its path; the weights moved and stay finite.
    assert int(model.step.numpy()) == 3
    assert int(model.g_optimizer.iterations.numpy()) == 3
    assert int(model.d_optimizer.iterations.numpy()) == 3
    assert int(model.d_optimizer_fake.iterations.numpy()) == 3
    assert int(model.d_optimizer_real.iterations.numpy()) == 3
    assert model.weights_are_finite()
    checkpoints = dict(rundir.list_checkpoints(tmp_path))
    assert sorted(checkpoints) == [1, 2, 3]
    earlier = loop.build_model(cfg)
    earlier.load_weights(str(checkpoints[1]))
    moved = [float(np.max(np.abs(a.numpy() - b.numpy())))
             for a, b in zip(model.autoencoder.trainable_weights,
                             earlier.autoencoder.trainable_weights, strict=True)]
    assert max(moved) > 1e-5
    earlier.load_weights(str(checkpoints[2]))
    d_real, d_real_before = (m.discriminator_pairs()["real"][1] for m in (model, earlier))
    assert any(not np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(d_real.trainable_weights, d_real_before.trainable_weights))
