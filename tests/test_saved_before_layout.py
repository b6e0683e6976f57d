"""A run directory and an export written by the code before the sub-package layout (commit
cd2d5db, flat onegan_tf/ modules) still load: the layout changed no weight or variable name.

tests/data/saved_before_layout.tar.xz holds run/config.json, the run's newest checkpoint
run/checkpoints/ckpt-00000002.weights.h5 and export/1/ (the SavedModel exported from it), made
at cd2d5db with

    python -m onegan_tf.train --preset=tiny --run_dir=run --total_steps=2 --image_size=16 \\
        --gf_dim=2 --df_dim=1 --ef_dim=1 --z_dim=2 --code_dim=2 --batch_size=2 \\
        --phase1_steps=1 --fake_recon_start=1 --real_recon_start=1 --eval_examples=12 \\
        --eval_every=100 --sample_every=100 --checkpoint_every=100 --log_every=1
    python -m onegan_tf.export --run_dir=run --export_dir=export

(step 2 ran all three paths, so the checkpoint holds trained clones and every optimizer's
moments; the archive is xz-compressed: 0.9 MB instead of 5.2 MB.)
"""

import io
import json
import tarfile

import h5py
import numpy as np
import pytest

from onegan_tf import data
from onegan_tf.compat import weights_bytes
from onegan_tf.serving import client, inference
from onegan_tf.training import loop, rundir

ARCHIVE = "saved_before_layout.tar.xz"


@pytest.fixture(scope="module")
def saved(tmp_path_factory, repo_root):
    """The archive unpacked: (run dir, export version dir)."""
    target = tmp_path_factory.mktemp("saved_before_layout")
    with tarfile.open(repo_root / "tests" / "data" / ARCHIVE, "r:xz") as archive:
        archive.extractall(target, filter="data")
    return target / "run", target / "export" / "1"


@pytest.fixture(scope="module")
def restored(saved):
    """(model, step, checkpoint path) restored by today's code."""
    run_dir, _ = saved
    messages = []
    restored = loop.restore_checkpoint(run_dir, log=messages.append)
    assert messages == []  # no checkpoint was skipped
    return restored


def _datasets(h5_file) -> dict:
    values = {}
    h5_file.visititems(lambda name, item: values.__setitem__(name, item[()])
                       if isinstance(item, h5py.Dataset) else None)
    return values


def test_the_checkpoint_restores_every_variable(restored):
    model, step, path = restored
    assert (step, path.name) == (2, "ckpt-00000002.weights.h5")
    assert int(model.step.numpy()) == 2 and int(model.clones_loaded.numpy()) == 1
    variables = rundir.state_variables(model)
    assert rundir.all_finite(variables)
    # Saving the restored model again writes the old file's datasets under the same names with
    # the same values: every variable was found under its old name and loaded.
    with h5py.File(path, "r") as f:
        before = _datasets(f)
    with h5py.File(io.BytesIO(weights_bytes(model)), "r") as f:
        after = _datasets(f)
    assert len(before) == len(variables) > 100
    assert sorted(after) == sorted(before)
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)


def test_the_export_serves_what_the_restored_ema_computes(saved, restored):
    _, export_dir = saved
    model, step, path = restored
    info = json.loads((export_dir / "assets.extra" / "export.json").read_text())
    assert (info["checkpoint"], info["step"], info["weights"]) == (path.name, step, "ema")
    served = client.ServedModel(export_dir)
    assert served.image_size == model.config.image_size == 16
    images = data.evaluation_batch(model.config, 8)["image"].numpy()
    mask = served("segment", images=images)["mask"]
    expected = inference.segment(model.ema, images).numpy()
    assert mask.shape == expected.shape == (8, 16, 16, 1)
    np.testing.assert_allclose(mask, expected, atol=1e-5)
