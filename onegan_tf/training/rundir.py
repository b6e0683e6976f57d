"""The run-directory contract: config.json, params.json, stats.jsonl, checkpoints/, samples/.

Every file is written with `fileio.atomic_write`, so a run killed at any moment (even with
kill -9) leaves only complete files; `fileio.remove_stale_temporaries` deletes the temporaries
of writers that no longer run.
Restoring is all-or-nothing: a checkpoint that does not load completely, or loads a non-finite
value, leaves the model as it was and the next older one is tried. A file-system failure is a
`FileSystemError` naming the operation and the path.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import warnings
from pathlib import Path

from onegan_tf.compat import weights_bytes
from onegan_tf.config import Config
from onegan_tf.fileio import FileSystemError, atomic_write, fs_error

# Fields that may change when a run is resumed; any other difference is an error.
RESUMABLE_FIELDS = frozenset({
    "total_steps", "run_dir", "log_every", "sample_every", "checkpoint_every",
    "keep_checkpoints", "strategy", "jit_compile", "data_dir", "strict_data", "eval_every",
    "eval_examples", "lr_decay_steps",
})
_CKPT = re.compile(r"^ckpt-(\d+)\.weights\.h5$")
_SKIPPED = re.compile(r"Skipping variable loading for optimizer '([^']+)'")
DAMAGED_DIR = "damaged"


class CheckpointError(RuntimeError):
    """Checkpoints exist but none of them can be restored."""


def default_run_dir(preset_name: str) -> str:
    return os.path.join("runs", preset_name)


def prepare(config: Config) -> Path:
    """Creates the run dir and refuses to resume with an incompatible config. config.json is
    written by `save_config` once the checkpoints (if any) are known to fit the config."""
    run_dir = Path(config.run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise fs_error("create the run directory", f"--run_dir={run_dir}", error) from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise FileSystemError(f"cannot write to the run directory --run_dir={run_dir}: "
                          "permission denied")
    saved_path = run_dir / "config.json"
    if saved_path.exists():
        try:
            saved = json.loads(saved_path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"{saved_path}: unreadable config ({error}); restore it, or use "
                             "another --run_dir") from None
        current = dataclasses.asdict(config)
        changed = sorted(k for k in current
                         if k not in RESUMABLE_FIELDS and k in saved and saved[k] != current[k])
        if changed:
            details = ", ".join(f"--{k}={current[k]!r} (run has {saved[k]!r})" for k in changed)
            raise ValueError(
                f"--run_dir={config.run_dir}: holds a run with a different config: {details}. "
                "Use another --run_dir, or the same flags to resume.")
    return run_dir


def save_config(config: Config, run_dir: str | Path):
    atomic_write(Path(run_dir) / "config.json", config.to_json() + "\n")


def load_config(run_dir: str | Path) -> Config:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"--run_dir={run_dir}: no config.json (not a training run dir)")
    try:
        return Config.from_json(path.read_text())
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"{path}: unreadable config ({error})") from None


def append_stats(run_dir: str | Path, record: dict):
    """One JSON line per logging step. Appends are small and line-buffered; a torn last line
    after a crash is skipped by `read_stats`."""
    path = Path(run_dir) / "stats.jsonl"
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
    except OSError as error:
        raise fs_error("append to", path, error) from None


def truncate_stats(run_dir: str | Path, step: int):
    """Drops the records after `step` (and torn lines): a run resumed from the checkpoint of
    `step` logs those steps again, so each step keeps one record."""
    path = Path(run_dir) / "stats.jsonl"
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    kept = [r for r in read_stats(run_dir) if r.get("step", 0) <= step]
    if len(kept) != len(lines):
        atomic_write(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))


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
    A failed write (disk full, ...) removes its temporary file and raises `FileSystemError`; the
    older checkpoints are untouched.
    """
    if not model.weights_are_finite():
        raise ValueError(f"step {step}: non-finite weights; checkpoint not written")
    final = checkpoint_dir(run_dir) / f"ckpt-{step:08d}.weights.h5"
    try:
        data = weights_bytes(model)
    except Exception as error:
        raise FileSystemError(f"cannot serialise checkpoint {final}: {error}") from None
    atomic_write(final, data)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return final


def state_variables(model) -> list:
    """Everything a checkpoint restores: the model's weights and its optimizers' variables."""
    import keras

    variables, seen = [], set()
    optimizers = [a for a in vars(model).values() if isinstance(a, keras.optimizers.Optimizer)]
    for v in list(model.weights) + [v for o in optimizers for v in o.variables]:
        if id(v) not in seen:
            seen.add(id(v))
            variables.append(v)
    return variables


def all_finite(variables) -> bool:
    import numpy as np

    return all(bool(np.all(np.isfinite(v.numpy()))) for v in variables
               if np.issubdtype(np.dtype(v.dtype), np.floating))


def _load_all_weights(model, path: Path):
    """model.load_weights, where Keras's warning that it skipped the state of an optimizer that
    trains (its variable count differs: a checkpoint of another config) is an error: resuming
    with fresh Adam moments would lose training silently. Keras's default compile() optimizer,
    which nothing uses, may differ."""
    names = set()
    for optimizer in model.trained_optimizers():
        names |= {optimizer.name, getattr(optimizer, "inner_optimizer", optimizer).name}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(str(path))
    for warning in caught:
        message = str(warning.message)
        skipped = _SKIPPED.match(message)
        if skipped and skipped.group(1) in names:
            raise ValueError(f"it does not fit this model: {message.strip()}")
        warnings.warn_explicit(warning.message, warning.category, warning.filename,
                               warning.lineno)


def restore_latest(model, run_dir: str | Path, log=print) -> tuple[int, Path] | None:
    """Loads the newest checkpoint that restores completely and holds only finite values;
    returns (step, path), or None when the run has no checkpoint.

    All-or-nothing: a checkpoint that fails half-way (or loads a NaN/Inf) is undone before the
    next older one is tried. When checkpoints exist and none restores, raises CheckpointError
    naming them; nothing is deleted or overwritten.
    """
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        return None
    variables = state_variables(model)
    initial = [v.numpy() for v in variables]
    problems = []
    for step, path in reversed(checkpoints):
        try:
            _load_all_weights(model, path)
            if not all_finite(variables):
                raise ValueError("it holds non-finite (NaN/Inf) values")
        except Exception as error:  # a damaged file: undo, fall back to the one before
            for v, value in zip(variables, initial):
                v.assign(value)
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            reason = " ".join(lines[:2])[:300] or type(error).__name__
            problems.append(f"{path.name}: {reason}")
            log(f"warning: cannot restore checkpoint {path} ({reason}); trying an older one")
            continue
        return step, path
    raise CheckpointError(
        f"--run_dir={run_dir}: none of the {len(checkpoints)} checkpoint(s) in "
        f"{checkpoint_dir(run_dir)} can be restored ({'; '.join(problems)}). They are kept. "
        "If the flags changed, use the run's flags; to start over in this run dir, pass "
        "--restart_unreadable (the checkpoints are moved to "
        f"{checkpoint_dir(run_dir) / DAMAGED_DIR})")


def set_aside_checkpoints(run_dir: str | Path, log=print) -> Path:
    """Moves every checkpoint to checkpoints/damaged/ (numbered, never overwriting)."""
    target = checkpoint_dir(run_dir) / DAMAGED_DIR
    target.mkdir(parents=True, exist_ok=True)
    for _, path in list_checkpoints(run_dir):
        destination, n = target / path.name, 1
        while destination.exists():
            destination, n = target / f"{path.name}.{n}", n + 1
        shutil.move(str(path), str(destination))
    log(f"moved the unreadable checkpoints to {target}; starting over")
    return target
