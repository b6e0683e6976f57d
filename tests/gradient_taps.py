"""Helpers for the gradient-routing tests (tests/nets/test_autoencoder.py,
tests/training/test_trainer.py): record intermediate tensors of a forward pass so that a test can
take the gradient of the outputs with respect to them."""

import tensorflow as tf


def tap(monkeypatch, network, taps, name, key=None):
    """Wraps `network.call` so that its output (or output[key]) is recorded in taps[name]: the
    very tensor the reconstruction path consumes, so tape.gradient(..., taps[name]) is the
    derivative of the outputs with respect to that intermediate."""
    original = network.call

    def call(*args, **kwargs):
        out = original(*args, **kwargs)
        taps[name] = out if key is None else out[key]
        return out

    monkeypatch.setattr(network, "call", call)


def tap_pre_images_and_bypasses(monkeypatch, ae):
    """A_fg (G_fg0), A_bg (G_bg0), B_fg (E_p's bypass head), B_bg (E_bg)."""
    taps = {}
    tap(monkeypatch, ae.foreground_pre, taps, "A_fg")
    tap(monkeypatch, ae.background_pre, taps, "A_bg")
    tap(monkeypatch, ae.shape_encoder, taps, "B_fg", key="bypass")
    tap(monkeypatch, ae.background_encoder, taps, "B_bg")
    return taps


def output_objective(out, seed=0):
    """A generic scalar of every image-like output (random weights: no cancellations)."""
    total = 0.0
    for i, key in enumerate(("image", "foreground", "mask", "background")):
        w = tf.random.stateless_normal(tf.shape(out[key]), (seed, i))
        total += tf.reduce_sum(out[key] * w)
    return total


def per_example_abs_sum(gradient):
    """sum |gradient| over every axis but the batch's, as numpy [B] (None for no gradient)."""
    if gradient is None:
        return None
    return tf.reduce_sum(tf.abs(gradient), axis=tuple(range(1, gradient.shape.rank))).numpy()
