"""SavedModel signatures of a trained OneGAN (the inference API of `inference.py`), and helpers
to load and call them safely.

Signatures (inputs -> outputs; B is free, S = config.image_size):

| signature | inputs | outputs |
|---|---|---|
| `segment` (= `serving_default`) | images f32 [B,S,S,3] in [-1,1] | mask f32 [B,S,S,1] in [0,1] |
| `cluster` | images | parent_probs, shape_parent_probs [B,N_P]; child_probs [B,N_C]; ids |
| `reconstruct` | images | image, foreground, background [B,S,S,3]; mask [B,S,S,1] |
| `remove_object` | images | background [B,S,S,3] |
| `translate` | images, child_id int32 [B] | image [B,S,S,3] |
| `generate` | child_id int32 [B], seed int32 [B] | image, foreground, mask, background |
| `generate_from_z` | child_id int32 [B], z f32 [B,d_z] | as `generate` |
| `<name>_bytes` | image_bytes string [B] (+ child_id) | as `<name>`, at S x S |

The `_bytes` variants (segment, cluster, reconstruct, remove_object, translate) take encoded
JPEG/PNG/BMP/GIF images of any size (REST clients send them as {"b64": ...}); they are decoded,
resized to S x S (bilinear) and scaled to [-1, 1] inside the graph. `generate` draws
z_i ~ N(0, I) from `seed_i` alone (`seeded_z`), so a (child_id, seed) pair gives the same image
in any batch.

Every signature checks its inputs in the graph (`inference.check_images`/`check_child_ids`): a
child id outside [0, N_C), float images outside [-1, 1] (8-bit values sent as floats), a wrong
image size or an empty batch fail with an InvalidArgumentError whose text names the input and
what it must be. `ServedModel` and `tflite_runner` check the same in Python (ValueError) before
running anything.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from onegan_tf import inference
from onegan_tf.autoencoder import AutoEncoder

IMAGE_SIGNATURES = ("segment", "cluster", "reconstruct", "remove_object", "translate")
SIGNATURES = ("segment", "cluster", "generate", "generate_from_z", "reconstruct",
              "remove_object", "translate") + tuple(f"{n}_bytes" for n in IMAGE_SIGNATURES)


def seeded_z(seeds, z_dim: int):
    """seeds int [B] -> z [B, z_dim] ~ N(0, I), row i a function of seeds[i] only."""
    seeds = tf.cast(tf.reshape(seeds, [-1]), tf.int64)
    return tf.map_fn(
        lambda s: tf.random.stateless_normal([z_dim], seed=tf.stack([s, tf.zeros_like(s)])),
        seeds, fn_output_signature=tf.TensorSpec([z_dim], tf.float32))


def decode_images(image_bytes, image_size: int):
    """Encoded images string [B] (any size, 1-4 channels) -> f32 [B, S, S, 3] in [-1, 1]."""
    image_bytes = tf.reshape(image_bytes, [-1])
    nonempty = tf.debugging.assert_positive(
        tf.size(image_bytes), message="image_bytes: empty batch; expected string [B], B >= 1")
    with tf.control_dependencies([nonempty]):
        image_bytes = tf.identity(image_bytes)

    def decode(data):
        image = tf.io.decode_image(data, channels=3, dtype=tf.float32, expand_animations=False)
        image.set_shape([None, None, 3])
        image = tf.image.resize(image, [image_size, image_size], antialias=True)
        return tf.clip_by_value(image, 0.0, 1.0) * 2.0 - 1.0

    return tf.map_fn(decode, image_bytes,
                     fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))


def signature_functions(autoencoder: AutoEncoder) -> dict:
    """name -> (python fn, input signature) for every signature (the first is serving_default).

    Every fn returns a dict (named outputs) and calls only `inference.py`."""
    cfg = autoencoder.config
    size, z_dim = cfg.image_size, cfg.z_dim
    images = tf.TensorSpec([None, size, size, 3], tf.float32, name="images")
    image_bytes = tf.TensorSpec([None], tf.string, name="image_bytes")
    child_id = tf.TensorSpec([None], tf.int32, name="child_id")
    seed = tf.TensorSpec([None], tf.int32, name="seed")
    z = tf.TensorSpec([None, z_dim], tf.float32, name="z")
    ae = autoencoder

    # The inference functions check their inputs (shape, range, child ids) in the graph.
    by_images = {
        "segment": lambda x: {"mask": inference.segment(ae, x)},
        "cluster": lambda x: inference.cluster(ae, x),
        "reconstruct": lambda x: inference.reconstruct(ae, x),
        "remove_object": lambda x: {"background": inference.remove_object(ae, x)},
    }
    functions = {name: (fn, [images]) for name, fn in by_images.items()}
    functions["translate"] = (
        lambda x, c: {"image": inference.translate(ae, x, c)}, [images, child_id])
    functions["generate"] = (
        lambda c, s: inference.generate(ae, c, seeded_z(s, z_dim)), [child_id, seed])
    functions["generate_from_z"] = (
        lambda c, zz: inference.generate(ae, c, tf.ensure_shape(zz, [None, z_dim])), [child_id, z])

    def on_bytes(fn):  # (a closure: default arguments would become signature inputs)
        return lambda b: fn(decode_images(b, size))

    for name, fn in by_images.items():
        functions[f"{name}_bytes"] = (on_bytes(fn), [image_bytes])
    functions["translate_bytes"] = (
        lambda b, c: {"image": inference.translate(ae, decode_images(b, size), c)},
        [image_bytes, child_id])
    return functions


def build_archive(autoencoder: AutoEncoder) -> keras.export.ExportArchive:
    """An ExportArchive of the (EMA) autoencoder with every signature; `segment` is added first
    so that it is also `serving_default`."""
    archive = keras.export.ExportArchive()
    archive.track(autoencoder)
    for name, (fn, spec) in signature_functions(autoencoder).items():
        archive.add_endpoint(name, fn, input_signature=spec)
    return archive


# --- TFLite ----------------------------------------------------------------------------------
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
    import json
    from pathlib import Path

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


# --- the consumer side -----------------------------------------------------------------------
class ServedModel:
    """A loaded OneGAN SavedModel: `model(signature, **inputs)` checks names, dtypes and shapes
    against the signature (ValueError with a readable message) before running it; the
    signature's own checks (value ranges, child ids, empty batches) also raise ValueError here.
    The loaded concrete functions are thread-safe; so is this wrapper."""

    def __init__(self, path):
        self.path = str(path)
        self.loaded = tf.saved_model.load(self.path)
        self.signatures = dict(self.loaded.signatures)

    def input_specs(self, signature: str) -> dict[str, tf.TensorSpec]:
        return dict(self._signature(signature).structured_input_signature[1])

    @property
    def image_size(self) -> int:
        return int(self.input_specs("segment")["images"].shape[1])

    @property
    def num_children(self) -> int:
        return int(self._signature("cluster").structured_outputs["child_probs"].shape[-1])

    def _signature(self, name: str):
        if name not in self.signatures:
            raise ValueError(f"{self.path}: no signature {name!r}; it has "
                             f"{', '.join(sorted(self.signatures))}")
        return self.signatures[name]

    def __call__(self, signature: str, **inputs) -> dict[str, np.ndarray]:
        specs = self.input_specs(signature)
        if set(inputs) != set(specs):
            raise ValueError(f"{signature}: expects inputs {sorted(specs)}, got {sorted(inputs)}")
        tensors = {}
        for key, spec in specs.items():
            value = inputs[key]
            value = value if tf.is_tensor(value) else np.asarray(value)
            dtype = tf.as_dtype(value.dtype)
            if dtype != spec.dtype or not spec.shape.is_compatible_with(value.shape):
                raise ValueError(
                    f"{signature}: input {key!r} must be {spec.dtype.name} "
                    f"{_shape_text(spec.shape)}, got {dtype.name} {list(value.shape)}")
            try:  # value range and empty batch, with the offending values in the message
                if key == "images":
                    inference.check_images(value, self.image_size)
                elif key == "child_id":
                    inference.check_child_ids(value, self.num_children, batch=True)
            except ValueError as error:
                raise ValueError(f"{signature}: {error}") from None
            tensors[key] = tf.convert_to_tensor(value)
        try:
            outputs = self._signature(signature)(**tensors)
        except tf.errors.InvalidArgumentError as error:  # an in-graph check, or a bad image
            raise ValueError(f"{signature}: {_assertion_text(error.message)}") from None
        return {k: v.numpy() for k, v in outputs.items()}


def _assertion_text(message: str) -> str:
    """The first line of an op error without TF's decoration: "{{function_node ...}}
    assertion failed: [image_bytes: empty batch ...] [Condition x > 0 ...] ..." ->
    "image_bytes: empty batch ..."."""
    first = message.strip().splitlines()[0]
    if first.startswith("{{function_node") and "}}" in first:
        first = first.split("}}", 1)[1].strip()
    prefix = "assertion failed: ["
    if first.startswith(prefix):
        first = first[len(prefix):].split("] [", 1)[0].rstrip(". ")
    return first


def _shape_text(shape: tf.TensorShape) -> str:
    return "[" + ", ".join("B" if d is None else str(d) for d in shape.as_list()) + "]"


def model_step_info(autoencoder: AutoEncoder) -> dict:
    """What the export manifest records about the network."""
    return {"parameters": int(autoencoder.count_params()), "image_size": autoencoder.config
            .image_size, "num_parents": autoencoder.config.num_parents,
            "num_children": autoencoder.config.num_children, "z_dim": autoencoder.config.z_dim}


# --- a stand-in PredictionService ------------------------------------------------------------
def prediction_servicer(model_dir, model_name: str):
    """A gRPC `tensorflow.serving.PredictionService` that answers `Predict` by running the
    SavedModel's signatures: the client side of TF Serving, testable where the real
    `tensorflow_model_server` binary cannot be installed. Not a production server."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    model = ServedModel(model_dir)

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802  (the gRPC method name)
            if request.model_spec.name != model_name:
                context.abort(grpc.StatusCode.NOT_FOUND,
                              f"Servable not found for request: {request.model_spec.name}")
            signature = request.model_spec.signature_name or "serving_default"
            try:
                inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
                outputs = model(signature, **inputs)
            except (ValueError, tf.errors.OpError) as error:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            response = predict_pb2.PredictResponse()
            response.model_spec.name = model_name
            response.model_spec.signature_name = signature
            for key in request.output_filter or outputs:
                response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
            return response

    return Servicer()


def start_grpc_server(model_dir, model_name: str, address: str = "127.0.0.1:0"):
    """-> (grpc server started on address, its port). Stop it with server.stop(None)."""
    from concurrent import futures

    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        prediction_servicer(model_dir, model_name), server)
    port = server.add_insecure_port(address)
    server.start()
    return server, port
