"""Tests for onegan_tf/training/rundir.py on its own: stats.jsonl (torn lines, truncation on
resume) and restoring from a run dir without checkpoints. Checkpoints written and restored by
training runs: test_loop.py and test_faults.py."""

from onegan_tf.training import rundir


def test_restore_latest_without_checkpoints(tmp_path, tiny_model):
    messages = []
    assert rundir.restore_latest(tiny_model, tmp_path, log=messages.append) is None
    assert messages == []


def test_rundir_stats_survive_a_torn_line(tmp_path):
    rundir.append_stats(tmp_path, {"step": 1, "gen/total": 2.5})
    rundir.append_stats(tmp_path, {"step": 2, "gen/total": 2.0})
    with open(tmp_path / "stats.jsonl", "a") as f:
        f.write('{"step": 3, "gen/to')  # killed mid-append
    assert rundir.read_stats(tmp_path) == [{"step": 1, "gen/total": 2.5},
                                           {"step": 2, "gen/total": 2.0}]
    assert rundir.read_stats(tmp_path / "missing") == []


def test_stats_truncated_to_the_restored_step(tmp_path):
    for step in (1, 2, 3, 4):
        rundir.append_stats(tmp_path, {"step": step, "gen/total": float(step)})
    with open(tmp_path / "stats.jsonl", "a") as f:
        f.write('{"step": 5, "gen/to')  # torn by a kill
    rundir.truncate_stats(tmp_path, 2)
    assert [r["step"] for r in rundir.read_stats(tmp_path)] == [1, 2]
    assert (tmp_path / "stats.jsonl").read_text().count("\n") == 2
