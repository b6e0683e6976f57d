"""SavedModel signatures of a trained OneGAN: the inference API of `inference.py` as
`keras.export.ExportArchive` endpoints.

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
what it must be. `client.ServedModel` and `tflite.tflite_runner` check the same in Python
(ValueError) before running anything.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from onegan_tf.nets.autoencoder import AutoEncoder
from onegan_tf.serving import inference

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


def model_step_info(autoencoder: AutoEncoder) -> dict:
    """What the export manifest records about the network."""
    return {"parameters": int(autoencoder.count_params()), "image_size": autoencoder.config
            .image_size, "num_parents": autoencoder.config.num_parents,
            "num_children": autoencoder.config.num_children, "z_dim": autoencoder.config.z_dim}
