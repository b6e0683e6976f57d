"""One worker of a multi-worker test run (TF_CONFIG set by the caller), or a one-process
reference run: `loop.train` on the flags of `python -m onegan_tf.train`, then

  * --weights_out=F.npz: every weight of the trained model (the final state of this worker);
  * --batch_out=F.npz: this worker's share of the first global batch of the training stream,
    as `fit` receives it under the strategy;
  * a last stdout line `RESULT {json}`.

Initial weights are seeded from --seed, so a one-process reference starts from the same weights
as the chief (MultiWorkerMirroredStrategy broadcasts the chief's initial values to the others).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from onegan_tf import cli  # noqa: E402
from onegan_tf.training import distribute

flags.DEFINE_string("weights_out", None, "write the final weights here (.npz)")
flags.DEFINE_string("batch_out", None, "write this worker's part of the first batch here (.npz)")
cli.define_config_flags()
FLAGS = flags.FLAGS


def main(argv):
    del argv
    config = cli.config_from_flags()
    # TensorFlow only now, as in `onegan_tf.train`.
    import keras
    import numpy as np

    from onegan_tf import data
    from onegan_tf.training import loop

    keras.utils.set_random_seed(config.seed)
    model = loop.train(config)
    strategy = model.distribute_strategy
    weights = {f"{i:04d}:{w.path}": np.asarray(w.numpy()) for i, w in enumerate(model.weights)}
    np.savez(FLAGS.weights_out, **weights)
    stream = distribute.distribute_input(data.training_dataset(config), strategy)
    first = next(iter(strategy.experimental_distribute_dataset(stream)))
    local = {k: np.concatenate([t.numpy() for t in strategy.experimental_local_results(v)])
             for k, v in first.items()}
    np.savez(FLAGS.batch_out, **local)
    print("RESULT " + json.dumps({
        "chief": distribute.is_chief(), "multi_worker": distribute.is_multi_worker(strategy),
        "replicas": strategy.num_replicas_in_sync, "step": int(model.step.numpy()),
        "clones_loaded": int(model.clones_loaded.numpy()), "paths": list(model.paths),
        "local_batch": int(local["image"].shape[0])}), flush=True)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    app.run(main)
