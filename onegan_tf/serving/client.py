"""The consumer side of an exported OneGAN: `ServedModel` loads a SavedModel and calls its
signatures with the inputs checked in Python first (ValueError naming the input)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from onegan_tf.serving import inference


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

    @property
    def num_parents(self) -> int:
        return int(self._signature("cluster").structured_outputs["parent_probs"].shape[-1])

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
