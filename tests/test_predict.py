"""`python -m onegan_tf.predict` (onegan_tf/predict.py): the exit status, its messages and the
files it writes, on the session's tiny export. (The library it calls:
tests/serving/test_image_files.py.)"""

import subprocess
import sys

import pytest

from onegan_tf.serving import image_files


def test_cli_exit_status(tiny_export, served, input_folder, tmp_path, subprocess_env):
    command = [sys.executable, "-m", "onegan_tf.predict", f"--model={tiny_export}",
               f"--output={tmp_path / 'o'}"]
    done = subprocess.run(command + [f"--input={input_folder}", "--task=translate", "--child_id=3"],
                          env=subprocess_env, capture_output=True, text=True, timeout=120)
    # one unreadable input: the others are written, the run exits 1
    assert done.returncode == 1, done.stderr
    assert "skipped" in done.stderr and "broken.png: unreadable image" in done.stderr
    assert "processed 2 of 3 images; wrote 2 files" in done.stdout
    assert (tmp_path / "o" / "a_png_child3.png").exists()
    assert (tmp_path / "o" / "a_jpg_child3.png").exists()
    missing = subprocess.run(command + [f"--input={input_folder / 'nope.png'}"], env=subprocess_env,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == (  # (TensorFlow may log lines before)
        f"error: --input: {input_folder / 'nope.png'}: no such file or directory")
    with pytest.raises(ValueError, match="needs --child_id"):
        image_files.predict(served, [str(input_folder)], "translate", tmp_path / "p")
    with pytest.raises(ValueError, match="children 0..11"):
        image_files.predict(served, [str(input_folder)], "translate", tmp_path / "p", child_id=12)


def test_cli_exits_1_when_nothing_could_be_processed(tiny_export, input_folder, tmp_path,
                                                     subprocess_env):
    done = subprocess.run(
        [sys.executable, "-m", "onegan_tf.predict", f"--model={tiny_export}",
         f"--input={input_folder / 'broken.png'}", f"--output={tmp_path / 'o'}", "--task=cluster"],
        env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "error: none of the 1 inputs could be processed" in done.stderr
    assert not (tmp_path / "o" / "clusters.csv").exists()
