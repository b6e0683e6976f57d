"""Tests for onegan_tf/nets/generators.py: the composite (Eq. 5) and the generator networks'
configs."""

import numpy as np
import tensorflow as tf

from onegan_tf.nets import generators

B = 3


def test_compose_formula_exact():
    rng = np.random.default_rng(1)
    bg = rng.uniform(-1, 1, (2, 4, 4, 3)).astype(np.float32)
    fg = rng.uniform(-1, 1, (2, 4, 4, 3)).astype(np.float32)
    mask = rng.uniform(0, 1, (2, 4, 4, 1)).astype(np.float32)
    compose = lambda b, f, m: np.asarray(  # noqa: E731
        generators.compose(tf.constant(b), tf.constant(f), tf.constant(m)))
    np.testing.assert_allclose(compose(bg, fg, mask), bg * (1 - mask) + fg * mask, atol=1e-7)
    np.testing.assert_array_equal(compose(bg, fg, np.zeros_like(mask)), bg)
    np.testing.assert_array_equal(compose(bg, fg, np.ones_like(mask)), fg)


def test_generator_configs_round_trip(tiny_model, tiny_config, rebuild_from_config):
    cfg, ae = tiny_config, tiny_model.autoencoder
    codes = [tf.ones((B, cfg.code_dim)), tf.ones((B, cfg.z_dim))]
    pre = ae.foreground_pre(codes)
    features = ae.shape_generator([pre, codes[0]])
    cases = [
        (ae.background_pre, codes), (ae.foreground_pre, codes),
        (ae.background_generator, pre), (ae.shape_generator, [pre, codes[0]]),
        (ae.appearance_generator, [features, codes[0]]),
    ]
    for net, inputs in cases:
        clone = rebuild_from_config(net, inputs)
        assert clone.get_config() == net.get_config(), net.name
