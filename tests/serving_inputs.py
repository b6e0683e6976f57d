"""Inputs and expected error texts shared by the serving tests (tests/serving/): the tiny model
has 12 children and takes 32 x 32 images."""

import numpy as np
import tensorflow as tf

CHILD_RANGE = r"child_id: expected ids in \[0, 11\] \(the model has 12 children\)"
FLOAT_RANGE = r"images: expected float values in \[-1, 1\]"


def png_bytes(array):
    """An image in [-1, 1] as PNG bytes."""
    return tf.io.encode_png(tf.cast(tf.round((array + 1) * 127.5), tf.uint8)).numpy()


def eight_bit(images):
    """The 0..255 values a caller may send by mistake."""
    return np.round((images + 1) * 127.5)
