"""Writing a trained OneGAN as a versioned SavedModel for TF Serving (and TFLite); the
command is `python -m onegan_tf.export`.

Writes the next integer version `EXPORT_DIR/<N>/` (a SavedModel with the signatures of
`signatures.py`, from the EMA weights) atomically: everything is written into a hidden temporary
directory beside EXPORT_DIR and renamed into place at the end, so TF Serving (which loads a
version as soon as its directory appears) never sees a half-written one. With `--tflite` the
version also holds `tflite/{cluster,segment}_{fp32,fp16,int8}.tflite`. Beside the SavedModel,
`onegan.keras` holds the same autoencoder as a Keras file: after
`from onegan_tf.nets.autoencoder import AutoEncoder` (which registers the class),
`keras.saving.load_model("EXPORT_DIR/<N>/onegan.keras")` returns it. The temporary
directory's name carries the exporter's process id; one left by a killed export is removed by
the next export. Non-finite weights are refused; a file-system failure is one error line naming
the path (fileio.FileSystemError) and leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from onegan_tf import fileio
from onegan_tf.serving import signatures
from onegan_tf.serving import tflite as tflite_lib  # (`tflite` is the keyword argument)
from onegan_tf.training import loop, rundir

KERAS_FILE = "onegan.keras"  # beside the SavedModel: keras.saving.load_model(<N>/onegan.keras)


def next_version(base: Path) -> int:
    """1 + the largest integer-named version directory under base (1 when there is none)."""
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()] \
        if base.exists() else []
    return max(versions, default=0) + 1


def export_autoencoder(autoencoder, export_dir: str | Path, *, tflite: bool = False,
                       representative=None, manifest: dict | None = None, log=print,
                       tflite_signatures=tflite_lib.SIGNATURES,
                       tflite_modes=tflite_lib.MODES) -> Path:
    """Writes autoencoder (the EMA AutoEncoder) as version N of export_dir; returns its path.

    tflite: also convert `tflite_signatures` x `tflite_modes` (int8 needs `representative`
    images [N, S, S, 3] in [-1, 1]; a signature that does not convert is reported and skipped).
    """
    if not rundir.all_finite(autoencoder.weights):
        raise ValueError("the model holds non-finite (NaN/Inf) weights; not exported")
    base = Path(export_dir)
    try:
        base.mkdir(parents=True, exist_ok=True)
        _remove_stale_exports(base, log)
        tmp = Path(tempfile.mkdtemp(dir=base.parent,
                                    prefix=f".{base.name}.export-{os.getpid()}-"))
    except OSError as error:
        raise fileio.fs_error("create the export directory", base, error) from None
    try:
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide the version from a server's user
        signatures.build_archive(autoencoder).write_out(str(tmp), verbose=False)
        autoencoder.save(str(tmp / KERAS_FILE))  # the same weights for Keras users
        extra = tmp / "assets.extra"
        extra.mkdir(exist_ok=True)
        (extra / "onegan_config.json").write_text(autoencoder.config.to_json() + "\n")
        info = {**(manifest or {}), **signatures.model_step_info(autoencoder),
                "signatures": list(signatures.SIGNATURES), "keras_file": KERAS_FILE,
                "tflite": []}
        if tflite:
            (tmp / "tflite").mkdir()
            source = tmp / "tflite" / ".source"
            tflite_lib.save_tflite_source(autoencoder, source, tflite_signatures)
            for signature in tflite_signatures:
                for mode in tflite_modes:
                    if mode == "int8" and representative is None:
                        continue
                    try:
                        flat = tflite_lib.convert_tflite(source, signature, mode, representative)
                    except Exception as error:  # report and go on: segment may not convert
                        log(f"warning: TFLite {signature} {mode} not converted: "
                            f"{str(error).splitlines()[0][:300]}")
                        continue
                    name = f"tflite/{signature}_{mode}.tflite"
                    (tmp / name).write_bytes(flat)
                    info["tflite"].append(name)
            shutil.rmtree(source)
        (extra / "export.json").write_text(json.dumps(info, indent=2) + "\n")
        while True:  # another exporter may take a number concurrently: rename fails, retry
            final = base / str(next_version(base))
            try:
                os.rename(tmp, final)
                break
            except OSError:
                if not final.exists():
                    raise
        fileio.fsync_dir(base)
        return final
    except (OSError, tf.errors.OpError) as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, fileio.FileSystemError):
            raise
        reason = getattr(error, "strerror", None) or str(error).strip().splitlines()[0]
        raise fileio.FileSystemError(
            f"cannot write the export {tmp} (for {base}): {reason}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_stale_exports(base: Path, log=print):
    """Temporary export directories of exporters that no longer run (killed mid-export)."""
    prefix = f".{base.name}.export-"
    for path in base.parent.glob(prefix + "*"):
        pid = path.name[len(prefix):].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not fileio.process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            log(f"removed the stale temporary export {path}")


def export_run(run_dir: str | Path, export_dir: str | Path, *, tflite: bool = False,
               representative_examples: int = 200, log=print) -> Path:
    """The EMA weights of the newest checkpoint of run_dir -> the next version of export_dir."""
    model, step, checkpoint = loop.restore_checkpoint(run_dir, log=log)
    representative = None
    if tflite:
        try:
            representative = tflite_lib.representative_images(model.config, representative_examples)
        except NotImplementedError as error:
            log(f"warning: no int8 TFLite models: {error}")
    manifest = {"run_dir": str(Path(run_dir).resolve()), "checkpoint": checkpoint.name,
                "step": step, "weights": "ema"}
    return export_autoencoder(model.ema, export_dir, tflite=tflite,
                              representative=representative, manifest=manifest, log=log)
