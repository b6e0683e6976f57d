"""Mixed precision: float16/bfloat16 compute, float32 variables and losses, a loss scale on
every optimizer (Keras wraps only the one given to compile())."""

import keras
import numpy as np

from onegan_tf import config as config_lib
from onegan_tf import data
from onegan_tf.training import loop


def test_bfloat16_policy_builds_with_float32_variables_and_outputs():
    model = loop.build_model(config_lib.preset("tiny", mixed_precision="mixed_bfloat16"))
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    conv = model.autoencoder.appearance_generator.joint.conv
    assert conv.compute_dtype == "bfloat16" and conv.kernel.dtype == "float32"
    assert not isinstance(model.g_optimizer, keras.optimizers.LossScaleOptimizer)
    out = model.ema.generate(np.zeros(2, np.int32), np.zeros((2, model.config.z_dim)))
    assert all(out[k].dtype == "float32" for k in ("image", "foreground", "mask", "background"))


def test_float16_training_is_finite_with_a_loss_scale_per_optimizer():
    cfg = config_lib.preset("tiny", mixed_precision="mixed_float16")
    model = loop.build_model(cfg)
    optimizers = [model.g_optimizer, *model.d_optimizers().values()]
    assert all(isinstance(o, keras.optimizers.LossScaleOptimizer) for o in optimizers)
    assert len({id(o) for o in optimizers}) == 4
    model.load_discriminator_clones()
    model.set_paths(("generation", "fake", "real"))
    history = model.fit(data.training_dataset(cfg), steps_per_epoch=3, epochs=1, verbose=0)
    for name, values in history.history.items():
        assert np.isfinite(values).all(), name
    assert int(model.step) == 3  # counted even if a scaled update were skipped
    assert model.weights_are_finite()
    scale = float(model.g_optimizer.dynamic_scale.numpy())
    assert 0 < scale <= 2.0**15
