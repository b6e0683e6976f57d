"""Export a trained OneGAN for TF Serving (and TFLite):
`python -m onegan_tf.export --run_dir=runs/shapes --export_dir=export/shapes [--tflite]`.

Writes the next integer version `EXPORT_DIR/<N>/` (a SavedModel with the signatures of
`serving.py`, from the EMA weights) atomically: everything is written into a hidden temporary
directory beside EXPORT_DIR and renamed into place at the end, so TF Serving (which loads a
version as soon as its directory appears) never sees a half-written one. With `--tflite` the
version also holds `tflite/{cluster,segment}_{fp32,fp16,int8}.tflite`. The temporary
directory's name carries the exporter's process id; one left by a killed export is removed by
the next export. Non-finite weights are refused; a file-system failure is one error line naming
the path (rundir.RunDirError) and leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

FLAGS = flags.FLAGS

TFLITE_SIGNATURES = ("cluster", "segment")
TFLITE_MODES = ("fp32", "fp16", "int8")


def next_version(base: Path) -> int:
    """1 + the largest integer-named version directory under base (1 when there is none)."""
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()] \
        if base.exists() else []
    return max(versions, default=0) + 1


def representative_images(config, count: int):
    """`count` training images [count, S, S, 3] in [-1, 1] (int8 calibration data)."""
    from onegan_tf import data

    batches = data.training_dataset(config).unbatch().take(count).batch(count)
    return next(iter(batches))["image"].numpy()


def convert_tflite(saved_model_dir: str | Path, signature: str, mode: str,
                   representative=None) -> bytes:
    """One signature of a SavedModel -> TFLite flatbuffer.

    fp32: plain conversion; fp16: float16 weights (float compute on CPU); int8: full-integer
    ops calibrated on `representative` ([N, S, S, 3] in [-1, 1]), float inputs and outputs (the
    quantize/dequantize happen inside, so callers feed the same tensors as to the SavedModel).
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir),
                                                         signature_keys=[signature])
    if mode == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        if representative is None:
            raise ValueError("int8 conversion needs representative images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            {"images": representative[i:i + 1]} for i in range(len(representative)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    elif mode != "fp32":
        raise ValueError(f"unknown TFLite mode {mode!r}; choose one of {TFLITE_MODES}")
    return converter.convert()


def export_autoencoder(autoencoder, export_dir: str | Path, *, tflite: bool = False,
                       representative=None, manifest: dict | None = None, log=print,
                       tflite_signatures=TFLITE_SIGNATURES, tflite_modes=TFLITE_MODES) -> Path:
    """Writes autoencoder (the EMA AutoEncoder) as version N of export_dir; returns its path.

    tflite: also convert `tflite_signatures` x `tflite_modes` (int8 needs `representative`
    images [N, S, S, 3] in [-1, 1]; a signature that does not convert is reported and skipped).
    """
    import tensorflow as tf

    from onegan_tf import rundir, serving

    if not rundir.all_finite(autoencoder.weights):
        raise ValueError("the model holds non-finite (NaN/Inf) weights; not exported")
    base = Path(export_dir)
    try:
        base.mkdir(parents=True, exist_ok=True)
        _remove_stale_exports(base, log)
        tmp = Path(tempfile.mkdtemp(dir=base.parent,
                                    prefix=f".{base.name}.export-{os.getpid()}-"))
    except OSError as error:
        raise rundir.fs_error("create the export directory", base, error) from None
    try:
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide the version from a server's user
        serving.build_archive(autoencoder).write_out(str(tmp), verbose=False)
        extra = tmp / "assets.extra"
        extra.mkdir(exist_ok=True)
        (extra / "onegan_config.json").write_text(autoencoder.config.to_json() + "\n")
        info = {**(manifest or {}), **serving.model_step_info(autoencoder),
                "signatures": list(serving.SIGNATURES), "tflite": []}
        if tflite:
            (tmp / "tflite").mkdir()
            source = tmp / "tflite" / ".source"
            serving.save_tflite_source(autoencoder, source, tflite_signatures)
            for signature in tflite_signatures:
                for mode in tflite_modes:
                    if mode == "int8" and representative is None:
                        continue
                    try:
                        flat = convert_tflite(source, signature, mode, representative)
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
        _fsync_dir(base)
        return final
    except (OSError, tf.errors.OpError) as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, rundir.RunDirError):
            raise
        reason = getattr(error, "strerror", None) or str(error).strip().splitlines()[0]
        raise rundir.RunDirError(f"cannot write the export {tmp} (for {base}): {reason}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_stale_exports(base: Path, log=print):
    """Temporary export directories of exporters that no longer run (killed mid-export)."""
    from onegan_tf import rundir

    prefix = f".{base.name}.export-"
    for path in base.parent.glob(prefix + "*"):
        pid = path.name[len(prefix):].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not rundir.process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            log(f"removed the stale temporary export {path}")


def export_run(run_dir: str | Path, export_dir: str | Path, *, tflite: bool = False,
               representative_examples: int = 200, log=print) -> Path:
    """The EMA weights of the newest checkpoint of run_dir -> the next version of export_dir."""
    from onegan_tf import train_lib

    model, step, checkpoint = train_lib.restore_checkpoint(run_dir, log=log)
    representative = None
    if tflite:
        try:
            representative = representative_images(model.config, representative_examples)
        except NotImplementedError as error:
            log(f"warning: no int8 TFLite models: {error}")
    manifest = {"run_dir": str(Path(run_dir).resolve()), "checkpoint": checkpoint.name,
                "step": step, "weights": "ema"}
    return export_autoencoder(model.ema, export_dir, tflite=tflite,
                              representative=representative, manifest=manifest, log=log)


def _fsync_dir(path: Path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.run_dir:
        print("error: --run_dir is required", file=sys.stderr)
        return 2
    export_dir = FLAGS.export_dir or os.path.join(
        "export", Path(FLAGS.run_dir).resolve().name)
    try:
        path = export_run(FLAGS.run_dir, export_dir, tflite=FLAGS.tflite,
                          representative_examples=FLAGS.representative_examples)
    except (ValueError, FileNotFoundError, OSError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"exported {path}")
    for tfl in sorted((path / "tflite").glob("*.tflite")) if FLAGS.tflite else []:
        print(f"  {tfl.relative_to(path)}  {tfl.stat().st_size / 1e6:.2f} MB")
    return 0


def define_flags():
    """The CLI's flags (defined only when run as a program, so the library imports freely)."""
    flags.DEFINE_string("run_dir", None, "training run directory (config.json + checkpoints/)")
    flags.DEFINE_string("export_dir", None, "model base directory; default export/<run dir name>")
    flags.DEFINE_boolean("tflite", False,
                         "also convert cluster and segment to TFLite fp32/fp16/int8")
    flags.DEFINE_integer("representative_examples", 200,
                         "training images used to calibrate the int8 TFLite models")


if __name__ == "__main__":
    define_flags()
    app.run(main)
