"""Tests for onegan_tf/serving/savedmodel.py: the versioned, atomic export. (Its signatures:
test_signatures.py; its TFLite files: test_tflite.py; a full disk: tests/training/test_faults.py;
exporting a run: tests/test_saved_before_layout.py.)"""

import pytest

from onegan_tf.serving import savedmodel, signatures


def test_version_layout_and_next_version(tiny_export, tiny_autoencoder, tmp_path):
    assert tiny_export.name == "1" and (tiny_export / "saved_model.pb").exists()
    assert sorted(p.name for p in tiny_export.parent.parent.iterdir()) == ["tiny"]  # no temp left
    assert (tiny_export / "assets.extra" / "export.json").exists()
    (tmp_path / "m" / "7").mkdir(parents=True)
    (tmp_path / "m" / "notes").mkdir()
    assert savedmodel.next_version(tmp_path / "m") == 8


def test_interrupted_export_leaves_no_version(tiny_autoencoder, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(signatures, "build_archive", broken)
    with pytest.raises(RuntimeError):
        savedmodel.export_autoencoder(tiny_autoencoder, tmp_path / "m")
    assert list((tmp_path / "m").iterdir()) == [] and len(list(tmp_path.iterdir())) == 1
