"""The training command, `python -m onegan_tf.train` (onegan_tf/train.py and the flags of
onegan_tf/cli.py), in subprocesses: absl parses sys.argv once per process."""

import json
import subprocess
import sys

from onegan_tf import config as config_lib
from onegan_tf.training import rundir


def _train_cli(args, env, cwd, python_args=()):
    return subprocess.run([sys.executable, *python_args, "-m", "onegan_tf.train", *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_dry_run_with_flagfile_and_overrides(tmp_path, subprocess_env, repo_root):
    flagfile = tmp_path / "test.flags"
    flagfile.write_text("--preset=dogs\n--batch_size=7\n--norm=glu_instancenorm\n"
                        "--nouse_per_loss\n")
    result = _train_cli([f"--flagfile={flagfile}", "--learning_rate=0.001", "--dry_run",
                         f"--run_dir={tmp_path / 'run'}"], subprocess_env, repo_root,
                        python_args=("-X", "importtime"))
    assert result.returncode == 0, result.stderr
    printed = config_lib.Config.from_json(result.stdout)
    expected = config_lib.preset("dogs", batch_size=7, norm="glu_instancenorm",
                                 use_per_loss=False, learning_rate=0.001,
                                 run_dir=str(tmp_path / "run"))
    assert printed == expected
    # --dry_run answers without importing TensorFlow (-X importtime lists every import).
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "onegan_tf.config" in imported and "absl.flags" in imported
    assert not any(name.split(".")[0] in ("tensorflow", "keras") for name in imported)


def test_bad_flags_exit_nonzero_naming_the_flag(tmp_path, subprocess_env, repo_root):
    # --dataset picks the preset when --preset is absent; the default run dir is runs/<preset>.
    ok = _train_cli(["--dataset=cars", "--dry_run"], subprocess_env, repo_root)
    assert ok.returncode == 0, ok.stderr
    cars = json.loads(ok.stdout)
    assert cars["num_children"] == 196 and cars["run_dir"].endswith("cars")
    bad = _train_cli(["--preset=tiny", "--num_parents=50", "--dry_run"], subprocess_env,
                     repo_root)
    assert bad.returncode != 0
    assert "--num_parents=50" in bad.stderr
    assert bad.stdout.strip() == ""
    nan = _train_cli(["--preset=tiny", "--learning_rate=nan", "--dry_run"], subprocess_env,
                     repo_root)
    assert nan.returncode != 0 and "--learning_rate=nan: must be a finite number" in nan.stderr


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
    assert [r["step"] for r in rundir.read_stats(run_dir) if "gen/total" in r] == [3]


def test_cli_rejects_bad_flags(tmp_path, subprocess_env, repo_root):
    result = subprocess.run(
        [sys.executable, "-m", "onegan_tf.train", "--flagfile=flags/tiny.flags",
         "--dataset=nope", f"--run_dir={tmp_path / 'bad'}"],
        capture_output=True, text=True, env=subprocess_env, cwd=repo_root, timeout=120)
    assert result.returncode != 0
    assert "--dataset='nope'" in result.stderr
    assert not (tmp_path / "bad").exists()  # nothing created for an invalid config


def test_the_package_turns_on_onednn_cpu_kernels_unless_the_environment_says(subprocess_env,
                                                                              repo_root):
    """TensorFlow leaves its oneDNN kernels off on CPUs without AVX-512 VNNI / BF16 or AMX,
    where they made a training step about twice as fast: importing onegan_tf turns them on,
    unless TF_ENABLE_ONEDNN_OPTS is set, which it leaves as it is."""
    code = ("import os, onegan_tf, tensorflow; "
            "from onegan_tf.benchmark import onednn_enabled; "
            "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], onednn_enabled())")
    base = {k: v for k, v in subprocess_env.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    for setting, expected in ((None, "1 True"), ("0", "0 False"), ("1", "1 True")):
        env = base if setting is None else {**base, "TF_ENABLE_ONEDNN_OPTS": setting}
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env=env, cwd=repo_root, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip().splitlines()[-1] == expected, (setting, result.stdout)
