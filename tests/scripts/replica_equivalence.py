"""Run in its own process: 2 logical CPUs must be configured before TF initialises devices.

One train_step on the same global batch with 1 replica and with 2 (MirroredStrategy) from the
same weights, with plain SGD (Adam would hide a wrong gradient scale). Prints JSON.
"""

import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from onegan_tf import config as config_lib  # noqa: E402
from onegan_tf import data  # noqa: E402
from onegan_tf.training import loop  # noqa: E402

# Small: the train step updates D, then each path in turn, so later sub-steps read weights the
# earlier ones moved. At 0.5 the updates reached the hundreds and erased the bias gaps set below
# before the real path's argmax read them; 1 and 2 replicas then differed by tens (once in about
# ten CI runs). At 1e-2 the largest update is ~0.03 and the two runs differ by float rounding.
LEARNING_RATE = 1e-2


def prepare(model, strategy):
    with strategy.scope():  # SGD: the update is -lr * gradient, so a wrong scale shows
        model.g_optimizer = keras.optimizers.SGD(LEARNING_RATE)
        model.d_optimizer = keras.optimizers.SGD(LEARNING_RATE)
        model.d_optimizer_fake = keras.optimizers.SGD(LEARNING_RATE)
        model.d_optimizer_real = keras.optimizers.SGD(LEARNING_RATE)
        model.g_optimizer.build(model.generator_variables())
        for path, opt in model.d_optimizers().items():
            opt.build(model.discriminator_variables(path))
    model.load_discriminator_clones()
    model.set_paths(("generation", "fake", "real"))


# Fixed weights and batch, and no near-ties in the hard argmax of E_p/E_c: at initialisation their
# logits differ by ~1e-3, so a 1e-7 difference between the two reduction orders could pick another
# parent for one example (it did, once in a few CI runs: both updates are right, but different).
# Well-separated logit biases make every choice the same on 1 and on 2 replicas.
keras.utils.set_random_seed(0)
cfg = config_lib.preset("tiny", batch_size=4, mixed_precision=sys.argv[1] if len(sys.argv) > 1
                        else "float32")
single = tf.distribute.get_strategy()
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
one = loop.build_model(cfg, single)
two = loop.build_model(cfg, mirrored)
for w in one.weights:
    if w.path.endswith(("parent_logits/bias", "child_logits/bias")):
        w.assign(10.0 * np.arange(w.shape[0], dtype="float32"))
for a, b in zip(one.weights, two.weights, strict=True):
    b.assign(a)
prepare(one, single)
prepare(two, mirrored)
before = [w.numpy().copy() for w in one.weights]
batch = next(iter(data.training_dataset(cfg)))
dataset = tf.data.Dataset.from_tensors(batch).repeat()
log_one = one.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0).history
log_two = two.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0).history
diffs = [float(np.max(np.abs(a.numpy() - b.numpy())))
         for a, b in zip(one.weights, two.weights) if a.numpy().size]
# Trainable weights only: the step counter also moves, by exactly 1.
moved = [float(np.max(np.abs(a.numpy() - b0)))
         for a, b0 in zip(one.weights, before) if a.trainable and a.numpy().size]
print(json.dumps({
    "replicas": two.distribute_strategy.num_replicas_in_sync,
    "max_weight_diff": max(diffs), "max_update": max(moved),
    "loss_one": log_one["total"][-1], "loss_two": log_two["total"][-1],
    "step_one": int(one.step.numpy()), "step_two": int(two.step.numpy()),
}))
