"""Writing files so that nothing half-written is ever seen, and file-system errors as one line.

`atomic_write` (temporary file in the same directory + fsync + rename) is the one way this
package writes a file that a reader, a resumed run or TF Serving may pick up. Temporary names
carry the writer's process id (".<final name>.<pid>.<random>.tmp"), so
`remove_stale_temporaries` can delete those of writers that no longer run (after kill -9).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

# Temporary files of `atomic_write`: ".<final name>.<pid>.<random>.tmp".
_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")


class FileSystemError(OSError):
    """A file-system operation (run directory, export, evaluator cache) failed: the message names
    the operation and the path, e.g. "cannot write checkpoint runs/x/...: No space left"."""


def fs_error(operation: str, path, error: OSError) -> FileSystemError:
    """`error` re-stated as one line: "cannot <operation> <path>: <reason>"."""
    failure = FileSystemError(f"cannot {operation} {path}: {error.strerror or error}")
    failure.errno = error.errno
    return failure


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: bytes | str):
    """Writes `data` to `path` through a temporary file in the same directory (fsync, rename);
    the file gets the usual 0666 & ~umask mode. On failure the old file is untouched, the
    temporary is removed and a `FileSystemError` names the path."""
    path = Path(path)
    mode = "wb" if isinstance(data, bytes) else "w"
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                                   suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        _unlink_quietly(tmp)
        if isinstance(error, FileSystemError):
            raise
        raise fs_error("write", path, error) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path):
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def remove_stale_temporaries(directory: str | Path, log=print) -> list[Path]:
    """Deletes temporary files (under `directory`, recursively) left by writers that no longer
    run, e.g. after kill -9; temporaries of a live process are kept. Returns what was removed."""
    removed = []
    for root, _, names in os.walk(directory):
        for name in names:
            match = _TEMPORARY.match(name)
            if match and int(match.group(1)) != os.getpid() and not process_alive(
                    int(match.group(1))):
                path = Path(root) / name
                _unlink_quietly(path)
                removed.append(path)
    if removed:
        log(f"removed {len(removed)} stale temporary file(s) under {directory}")
    return removed


def fsync_dir(path: str | Path):
    """Makes a rename inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
