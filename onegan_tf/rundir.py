"""The run-directory contract: config.json, params.json, stats.jsonl, checkpoints/, samples/.

Every file is written atomically (temporary file + fsync + rename), so a run killed at any
moment (even with kill -9) leaves only complete files; resuming picks the newest checkpoint
that loads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from pathlib import Path

from onegan_tf.config import Config

# Fields that may change when a run is resumed; any other difference is an error.
RESUMABLE_FIELDS = frozenset({
    "total_steps", "run_dir", "log_every", "sample_every", "checkpoint_every",
    "keep_checkpoints", "strategy", "jit_compile", "data_dir", "strict_data", "eval_every",
    "eval_examples",
})
_CKPT = re.compile(r"^ckpt-(\d+)\.weights\.h5$")


def default_run_dir(preset_name: str) -> str:
    return os.path.join("runs", preset_name)


def atomic_write(path: str | Path, data: bytes | str):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def prepare(config: Config) -> Path:
    """Creates the run dir, refuses to resume with an incompatible config, saves config.json."""
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    saved_path = run_dir / "config.json"
    if saved_path.exists():
        saved = json.loads(saved_path.read_text())
        current = dataclasses.asdict(config)
        changed = sorted(k for k in current
                         if k not in RESUMABLE_FIELDS and k in saved and saved[k] != current[k])
        if changed:
            details = ", ".join(f"--{k}={current[k]!r} (run has {saved[k]!r})" for k in changed)
            raise ValueError(
                f"--run_dir={config.run_dir}: holds a run with a different config: {details}. "
                "Use another --run_dir, or the same flags to resume.")
    atomic_write(saved_path, config.to_json() + "\n")
    return run_dir


def load_config(run_dir: str | Path) -> Config:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"--run_dir={run_dir}: no config.json (not a training run dir)")
    return Config.from_json(path.read_text())


def append_stats(run_dir: str | Path, record: dict):
    """One JSON line per logging step. Appends are small and line-buffered; a torn last line
    after a crash is skipped by `read_stats`."""
    with open(Path(run_dir) / "stats.jsonl", "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def read_stats(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "stats.jsonl"
    records = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


# --- checkpoints -----------------------------------------------------------------------------
def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of complete checkpoints, oldest first."""
    directory = checkpoint_dir(run_dir)
    if not directory.exists():
        return []
    found = [(int(m.group(1)), directory / name)
             for name in os.listdir(directory) if (m := _CKPT.match(name))]
    return sorted(found)


def save_checkpoint(model, run_dir: str | Path, step: int, keep: int) -> Path:
    """model.save_weights (weights, optimizer states, step) written atomically; prunes old ones.

    Refuses (ValueError) to save non-finite weights, so the newest checkpoint is always good.
    """
    if not model.weights_are_finite():
        raise ValueError(f"step {step}: non-finite weights; checkpoint not written")
    directory = checkpoint_dir(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"ckpt-{step:08d}.weights.h5"
    tmp = directory / f".ckpt-{step:08d}.tmp.weights.h5"
    model.save_weights(str(tmp))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return final


def restore_latest(model, run_dir: str | Path, log=print) -> int | None:
    """Loads the newest checkpoint that reads back; returns its step, or None if there is none."""
    for step, path in reversed(list_checkpoints(run_dir)):
        try:
            model.load_weights(str(path))
        except Exception as error:  # a damaged file: fall back to the one before
            log(f"warning: cannot read checkpoint {path} ({error}); trying an older one")
            continue
        return step
    return None
