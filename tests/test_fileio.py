"""Tests for onegan_tf/fileio.py: the atomic write and the removal of stale temporaries. (Writes
that fail in training and export: tests/training/test_faults.py.)"""

import os
import subprocess

import pytest

from onegan_tf import fileio


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


def test_stale_temporaries_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = [tmp_path / "checkpoints" / f".ckpt-00000003.weights.h5.{dead.pid}.k9x2.tmp",
             tmp_path / "samples" / f".generation_latest.png.{dead.pid}.ab12cd.tmp",
             tmp_path / f".config.json.{dead.pid}.xyz.tmp"]
    live = tmp_path / "samples" / f".translation_latest.png.{os.getpid()}.ef34gh.tmp"
    for path in stale + [live]:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"partial")
    removed = fileio.remove_stale_temporaries(tmp_path, log=lambda *_: None)
    assert sorted(removed) == sorted(stale)
    assert live.exists() and not any(p.exists() for p in stale)
