"""TFLite encoders: a SavedModel with the image-only signatures for the converter, the
conversion itself (fp32, fp16 or int8 with representative images), and a checked runner
of a converted file on the LiteRT interpreter."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from onegan_tf import data
from onegan_tf.nets.autoencoder import AutoEncoder
from onegan_tf.serving import inference
from onegan_tf.serving.signatures import signature_functions

SIGNATURES = ("cluster", "segment")  # the image-only signatures that are converted
MODES = ("fp32", "fp16", "int8")


def representative_images(config, count: int):
    """`count` training images [count, S, S, 3] in [-1, 1] (int8 calibration data)."""
    batches = data.training_dataset(config).unbatch().take(count).batch(count)
    return next(iter(batches))["image"].numpy()


def convert_tflite(saved_model_dir: str | Path, signature: str, mode: str,
                   representative=None) -> bytes:
    """One signature of a SavedModel -> TFLite flatbuffer.

    fp32: plain conversion; fp16: float16 weights (float compute on CPU); int8: full-integer
    ops calibrated on `representative` ([N, S, S, 3] in [-1, 1]), float inputs and outputs (the
    quantize/dequantize happen inside, so callers feed the same tensors as to the SavedModel).
    """
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
        raise ValueError(f"unknown TFLite mode {mode!r}; choose one of {MODES}")
    return converter.convert()


def save_tflite_source(autoencoder: AutoEncoder, directory, names=("cluster", "segment")):
    """A SavedModel holding only the signatures `names` (no string-decoding ones), for
    `tf.lite.TFLiteConverter.from_saved_model(directory, signature_keys=[name])`."""
    archive = keras.export.ExportArchive()
    archive.track(autoencoder)
    functions = signature_functions(autoencoder)
    for name in names:
        fn, spec = functions[name]
        archive.add_endpoint(name, fn, input_signature=spec)
    archive.write_out(str(directory), verbose=False)


def tflite_runner(path, signature: str, num_children: int | None = None):
    """The signature runner of a converted `.tflite` file (LiteRT interpreter):
    run(images=float32 [B, S, S, 3], ...) -> dict of numpy outputs.

    The converter drops the signatures' in-graph checks, so `run` checks its inputs here
    (ValueError naming the input): names, float32 images of the file's size in [-1, 1],
    B >= 1, and child ids in [0, num_children) for signatures that take them. num_children
    defaults to the export's `assets.extra/export.json` (for a file in `<version>/tflite/`)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner(signature)
    details = runner.get_input_details()
    if "child_id" in details and num_children is None:
        manifest = Path(path).resolve().parent.parent / "assets.extra" / "export.json"
        if not manifest.exists():
            raise ValueError(f"{path}: signature {signature!r} takes child ids; pass "
                             f"num_children (no {manifest})")
        num_children = json.loads(manifest.read_text())["num_children"]

    def run(**inputs):
        if set(inputs) != set(details):
            raise ValueError(f"{signature}: expects inputs {sorted(details)}, got "
                             f"{sorted(inputs)}")
        if "child_id" in inputs:
            inference.check_child_ids(inputs["child_id"], num_children, batch=True)
        if "images" in inputs:
            images = np.asarray(inputs["images"])
            inference.check_images(images, int(details["images"]["shape"][1]))
            inputs["images"] = images.astype(np.float32, copy=False)
        # the runner resizes the inputs; copy the outputs out of its arena
        return {k: np.array(v) for k, v in runner(**inputs).items()}

    return run
