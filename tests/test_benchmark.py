"""The throughput benchmark CLI runs end to end and reports every figure it promises."""

import json
import subprocess
import sys


def test_benchmark_cli_reports_every_figure(tmp_path, repo_root, subprocess_env):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "onegan_tf.benchmark", "--preset=tiny", "--phase=1",
         "--steps=2", "--warmup=0", f"--json_out={out}"],
        capture_output=True, text=True, env=subprocess_env, cwd=repo_root, timeout=300,
        check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "img/s" in result.stdout and "% of peak" in result.stdout
    report = json.loads(out.read_text())
    assert report["matmul_peak_gflops_per_second"] > 1
    # The tests run with the package's default (TF_ENABLE_ONEDNN_OPTS=1, conftest.py).
    assert report["onednn"] is True and "oneDNN CPU kernels on" in result.stdout
    (row,) = report["results"]
    assert row["phase"] == 1 and row["paths"] == "generation" and row["batch"] == 4
    assert row["median_seconds_per_iteration"] > 0
    assert row["images_per_second"] == row["batch"] / row["median_seconds_per_iteration"]
    assert 0 <= row["input_wait_share"] < 1
    assert row["gflops_per_image_iteration"] > 0 and row["peak_host_memory_mib"] > 100


def test_benchmark_rejects_a_bad_phase(repo_root, subprocess_env):
    result = subprocess.run([sys.executable, "-m", "onegan_tf.benchmark", "--phase=4"],
                            capture_output=True, text=True, env=subprocess_env, cwd=repo_root,
                            timeout=120, check=False)
    assert result.returncode == 2 and "--phase=4" in result.stderr
