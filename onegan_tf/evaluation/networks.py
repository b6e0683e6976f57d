"""Evaluator networks for FID / IS / CFID / CIS and the diversity within a code.

An evaluator maps images in [-1, 1] to pooled features (for the Frechet distances and the
diversity) and class probabilities (for the Inception scores):

- `shapes` and `clutter` (the built-in synthetic data): a small CNN trained once on the
  synthetic child labels (4 shape families x 3 appearances = 12 classes) and cached in
  `--evaluator_cache` (default ~/.cache/onegan_tf), one per dataset. Labels are used here only;
  OneGAN never sees them. Beside it, a mask classifier tells the shape family from an object
  mask (`shape_classifier`, for the shape accuracy of generated masks), trained on true masks
  and cached the same way.
- real data: InceptionV3 from a local file given as `--evaluator_weights`: either a classifier
  fine-tuned on the dataset with `python -m onegan_tf.evaluator` (a `.keras` file, as the
  paper does)

      python -m onegan_tf.evaluator --preset=cub --data_dir=~/tensorflow_datasets \\
          --init_weights=inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5 \\
          --output=evaluators/cub_inception.keras

  or the ImageNet InceptionV3 with its top (`inception_v3_weights_tf_dim_ordering_tf_kernels.h5`
  from the Keras releases, placed by hand: nothing is downloaded).
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from onegan_tf import fileio
from onegan_tf.compat import keras_file_bytes, weights_bytes
from onegan_tf.config import Config

SHAPES_CLASSES = 12  # shapes / clutter render_objects: 4 parents x 3 children
SHAPES_EVALUATOR_SEED = 104729  # its own stream, disjoint from training and evaluation seeds
SHAPES_EVALUATOR_VERSION = 2  # bump when the network or its training changes
INCEPTION_MIN_SIZE = 75


SHAPE_FAMILIES = 4  # shapes.render_objects' default parents: the families of evaluation data
SHAPE_CLASSIFIER_SEED = 15485863  # its own stream, disjoint from the others
SHAPE_CLASSIFIER_VERSION = 2  # bump when the network or its training changes
SHAPE_CLASSIFIER_MIN_ACCURACY = 0.97

# The synthetic datasets with labels to train evaluators on, and the held-out accuracy each
# network must reach.
SYNTHETIC_DATASETS = ("shapes", "clutter")
EVALUATOR_MIN_ACCURACY = {"shapes": 0.9, "clutter": 0.75}  # clutter: 0.85, 0.91 measured
MASK_CLASSIFIER_MIN_ACCURACY = {"shapes": SHAPE_CLASSIFIER_MIN_ACCURACY, "clutter": 0.9}
# The clutter networks are trained at 32 px and read larger inputs resized (`_SizedModel`): at
# 64 px the evaluator does 4x the convolution work (15 min against 3.5 on 2 busy CPU cores) for
# the same held-out accuracy (0.90 against 0.91).
MAX_TRAINING_SIZE = {"clutter": 32}


def default_cache_dir() -> Path:
    """$ONEGAN_TF_CACHE, else ~/.cache/onegan_tf."""
    return Path(os.environ.get("ONEGAN_TF_CACHE", Path.home() / ".cache" / "onegan_tf"))


def _synthetic_sources(dataset: str) -> tuple:
    """The modules of a synthetic dataset (`shapes` or `clutter`), its API module first: the
    sources that render it."""
    from onegan_tf.data import clutter, clutter_scene, shapes
    sources = {"shapes": (shapes,), "clutter": (clutter, clutter_scene, shapes)}
    if dataset not in sources:
        raise ValueError(f"--dataset={dataset}: the built-in evaluators exist for "
                         f"{', '.join(SYNTHETIC_DATASETS)} only")
    return sources[dataset]


def _synthetic_module(dataset: str):
    """The data module of a synthetic dataset (`shapes` or `clutter`)."""
    return _synthetic_sources(dataset)[0]


def _shapes_cache_path(cache_dir, kind: str, *key: str, dataset: str = "shapes") -> Path:
    """cache_dir (default `default_cache_dir()`) / kind-<hash>-key...weights.h5, where <hash>
    is that of the synthetic dataset's generator source: a changed dataset retrains what was
    trained on it."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    digest = hashlib.sha256()
    for module in _synthetic_sources(dataset):
        digest.update(Path(module.__file__).read_bytes())
    return cache_dir / f"{'-'.join((kind, digest.hexdigest()[:10], *key))}.weights.h5"


def _load_cached(model: keras.Model, path: Path, what: str, log) -> bool:
    """Whether `model`'s weights were read from `path`; a damaged file is reported to `log`
    and gives False (the caller retrains)."""
    if not path.exists():
        return False
    try:
        model.load_weights(str(path))
        return True
    except Exception as error:  # a damaged cache entry: train it again
        log(f"warning: cannot read cached {what} {path} ({error}); retraining")
        return False


def _save_atomically(model: keras.Model, path: Path) -> None:
    """Writes `model`'s weights to `path` atomically, so that a reader never sees a partial
    file."""
    fileio.atomic_write(path, weights_bytes(model))


class _SizedModel:
    """A keras model on square inputs [B, S, S, channels]: inputs of another size are resized
    to S, and each input size is traced once with a free batch size (`_function`)."""

    channels = 3

    def __init__(self, model: keras.Model, info: dict | None = None):
        self.model = model
        self.info = dict(info or {})
        self.image_size = int(model.inputs[0].shape[1])
        self._traced = {}  # (H, W) -> tf.function with a free batch size

    def _function(self, height: int, width: int):
        key = (height, width)
        if key not in self._traced:
            self._traced[key] = tf.function(
                self._forward,
                input_signature=[tf.TensorSpec([None, height, width, self.channels])])
        return self._traced[key]

    def _resized(self, inputs):
        inputs = tf.cast(inputs, tf.float32)
        if inputs.shape[1] != self.image_size or inputs.shape[2] != self.image_size:
            inputs = tf.image.resize(inputs, [self.image_size, self.image_size],
                                     method="bilinear", antialias=True)
        return inputs

    def _forward(self, inputs):
        raise NotImplementedError


class Evaluator(_SizedModel):
    """A keras model images [B, S, S, 3] in [-1, 1] -> [features [B, D], probs [B, C]]; inputs
    of another size are resized to S."""

    def __init__(self, model: keras.Model, name: str, info: dict | None = None):
        super().__init__(model, info)
        self.name = name
        # InceptionV3 evaluators follow the reference FID protocol (report.py): 8-bit images,
        # unbiased covariances, training objects as the reference set.
        self.reference_protocol = name.startswith("inception")

    def _forward(self, images):
        features, probs = self.model(self._resized(images), training=False)
        return tf.cast(features, tf.float32), tf.cast(probs, tf.float32)

    def __call__(self, images, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"evaluator {self.name}: need images [N, H, W, 3], got "
                             f"{images.shape}")
        features, probs = [], []
        for start in range(0, len(images), batch_size):
            f, p = self._function(*images.shape[1:3])(
                tf.constant(images[start:start + batch_size]))
            features.append(f.numpy())
            probs.append(p.numpy())
        return np.concatenate(features), np.concatenate(probs)


# --- shapes: a small classifier on the synthetic labels -------------------------------------

def small_classifier(image_size: int, num_classes: int, width: int = 32) -> keras.Model:
    """Four stride-2 conv blocks, global average pool (the features), softmax head."""
    inputs = keras.Input((image_size, image_size, 3))
    x = inputs
    for i, filters in enumerate((width, 2 * width, 4 * width, 4 * width)):
        x = keras.layers.Conv2D(filters, 3, strides=2 if i else 1, padding="same",
                                name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU()(x)
    features = keras.layers.GlobalAveragePooling2D(name="features")(x)
    probs = keras.layers.Dense(num_classes, activation="softmax", name="probs")(features)
    return keras.Model(inputs, [features, probs], name="shapes_evaluator")


def _shapes_batches(image_size: int, batch_size: int, start: int, count: int | None,
                    dataset: str = "shapes"):
    ds = _synthetic_module(dataset).object_dataset(
        seed=SHAPES_EVALUATOR_SEED, image_size=image_size, batch_size=batch_size,
        start_index=start, num_examples=count)
    return ds.map(lambda ex: (ex["image"], ex["child"]))


def shapes_evaluator(image_size: int, cache_dir: str | Path | None = None, steps: int = 1500,
                     batch_size: int = 64, log=print, dataset: str = "shapes") -> Evaluator:
    """The cached classifier of a synthetic dataset's (`shapes`, `clutter`) child labels for
    `image_size` (at most MAX_TRAINING_SIZE[dataset]: larger inputs are resized), trained first
    if not cached yet. Refused below EVALUATOR_MIN_ACCURACY[dataset]."""
    _synthetic_module(dataset)
    image_size = min(image_size, MAX_TRAINING_SIZE.get(dataset, image_size))
    path = _shapes_cache_path(cache_dir, f"{dataset}-evaluator-v{SHAPES_EVALUATOR_VERSION}",
                              f"{image_size}px", dataset=dataset)
    model = small_classifier(image_size, SHAPES_CLASSES)
    name = f"{dataset}-cnn"
    if _load_cached(model, path, "evaluator", log):
        return Evaluator(model, name, {"weights": str(path)})
    log(f"training the {dataset} evaluator ({steps} steps, batch {batch_size}) -> {path}")
    classifier = keras.Model(model.inputs, model.outputs[1])
    classifier.compile(optimizer=keras.optimizers.Adam(1e-3),
                       loss=keras.losses.SparseCategoricalCrossentropy(),
                       metrics=["accuracy"])
    classifier.fit(_shapes_batches(image_size, batch_size, 0, None, dataset),
                   steps_per_epoch=steps, epochs=1, verbose=0)
    held_out = _shapes_batches(image_size, 256, 10**9, 2048, dataset)
    accuracy = float(classifier.evaluate(held_out, verbose=0, return_dict=True)["accuracy"])
    log(f"{dataset} evaluator: held-out accuracy {accuracy:.3f}")
    if accuracy < EVALUATOR_MIN_ACCURACY[dataset]:
        raise RuntimeError(f"the {dataset} evaluator reached only {accuracy:.3f} held-out "
                           f"accuracy; its FID/IS would mean little")
    _save_atomically(model, path)
    return Evaluator(model, name, {"weights": str(path), "accuracy": accuracy})


# --- shapes: the shape family of an object mask ----------------------------------------------

class MaskClassifier(_SizedModel):
    """A keras model masks [B, S, S, 1] -> family probabilities [B, F]. Masks are binarised
    at 0.5 (as the segmentation metrics do, so soft generated masks are judged like the true
    binary ones); masks of another size are resized to S first."""

    channels = 1

    def __init__(self, model: keras.Model, info: dict | None = None):
        super().__init__(model, info)
        self.num_families = int(model.outputs[0].shape[-1])

    def _forward(self, masks):
        return self.model(tf.cast(self._resized(masks) >= 0.5, tf.float32), training=False)

    def probabilities(self, masks, batch_size: int = 256) -> np.ndarray:
        """Family probabilities [N, F] for masks [N, H, W, 1] in [0, 1]."""
        masks = np.asarray(masks, np.float32)
        if masks.ndim != 4 or masks.shape[-1] != 1:
            raise ValueError(f"shape classifier: need masks [N, H, W, 1], got {masks.shape}")
        run = self._function(*masks.shape[1:3])
        return np.concatenate([run(tf.constant(masks[s:s + batch_size])).numpy()
                               for s in range(0, len(masks), batch_size)])

    def __call__(self, masks, batch_size: int = 256) -> np.ndarray:
        """The most probable family [N] (int64) of each mask [N, H, W, 1] in [0, 1]."""
        return self.probabilities(masks, batch_size).argmax(1)


def mask_classifier_model(image_size: int, num_families: int, width: int = 16,
                          seed: int = SHAPE_CLASSIFIER_SEED) -> keras.Model:
    """Conv blocks down to 4x4 (stride 2 after the first), flatten, a 64-unit hidden layer and
    a softmax over the families: masks [B, S, S, 1] -> probabilities [B, F]. The initial
    weights come from `seed`, so that the same training gives the same classifier."""
    inputs = keras.Input((image_size, image_size, 1))
    strides = [1] + [2] * max(int(math.log2(image_size // 4)), 0)
    init = lambda i: keras.initializers.GlorotUniform(seed=seed + i)  # noqa: E731
    x = inputs
    for i, stride in enumerate(strides):
        x = keras.layers.Conv2D(width * min(2**i, 4), 3, strides=stride, padding="same",
                                activation="relu", kernel_initializer=init(i),
                                name=f"conv{i}")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu", kernel_initializer=init(len(strides)),
                           name="hidden")(x)
    probs = keras.layers.Dense(num_families, activation="softmax",
                               kernel_initializer=init(len(strides) + 1), name="probs")(x)
    return keras.Model(inputs, probs, name="shape_classifier")


def _mask_batches(image_size: int, num_families: int, batch_size: int, start: int,
                  count: int | None, dataset: str = "shapes") -> tf.data.Dataset:
    """(true object mask [B, S, S, 1], shape family [B]) batches of the classifier's stream."""
    ds = _synthetic_module(dataset).object_dataset(
        seed=SHAPE_CLASSIFIER_SEED, image_size=image_size, batch_size=batch_size,
        num_parents=num_families, start_index=start, num_examples=count)
    return ds.map(lambda ex: (ex["mask"], ex["parent"]))


def shape_classifier(image_size: int, num_families: int = SHAPE_FAMILIES,
                     cache_dir: str | Path | None = None, steps: int = 1500,
                     batch_size: int = 64, log=print, dataset: str = "shapes") -> MaskClassifier:
    """The cached classifier of the shape family (the synthetic data's parent: `shapes` or
    `clutter`) of an object mask, for `image_size` (at most MAX_TRAINING_SIZE[dataset]) and
    `num_families`; trained on true masks first if not cached yet (or if the cached file is
    damaged). Refused below MASK_CLASSIFIER_MIN_ACCURACY[dataset] held-out accuracy."""
    _synthetic_module(dataset)
    image_size = min(image_size, MAX_TRAINING_SIZE.get(dataset, image_size))
    path = _shapes_cache_path(cache_dir, f"{dataset}-mask-classifier-v{SHAPE_CLASSIFIER_VERSION}",
                              f"{image_size}px", f"{num_families}families",
                              f"seed{SHAPE_CLASSIFIER_SEED}", dataset=dataset)
    model = mask_classifier_model(image_size, num_families)
    if _load_cached(model, path, "shape classifier", log):
        return MaskClassifier(model, {"weights": str(path)})
    log(f"training the shape classifier ({steps} steps, batch {batch_size}) -> {path}")
    # A rate that decays to 0 ends on a settled network; at a constant rate the held-out
    # accuracy sometimes fell below the gate (docs/evaluation.md, "The mask classifier").
    rate = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=max(steps, 1))
    model.compile(optimizer=keras.optimizers.Adam(rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    model.fit(_mask_batches(image_size, num_families, batch_size, 0, None, dataset),
              steps_per_epoch=steps, epochs=1, verbose=0)
    held_out = _mask_batches(image_size, num_families, 256, 10**9, 2048, dataset)
    accuracy = float(model.evaluate(held_out, verbose=0, return_dict=True)["accuracy"])
    log(f"shape classifier: held-out accuracy {accuracy:.3f}")
    minimum = MASK_CLASSIFIER_MIN_ACCURACY[dataset]
    if accuracy < minimum:
        raise RuntimeError(f"the shape classifier reached only {accuracy:.3f} held-out "
                           f"accuracy (< {minimum}); its shape accuracy would mean little")
    _save_atomically(model, path)
    return MaskClassifier(model, {"weights": str(path), "accuracy": accuracy})


# --- real data: InceptionV3 from a local file ------------------------------------------------

def inception_classifier(num_classes: int, image_size: int = 299,
                         backbone_weights: str | None = None) -> keras.Model:
    """InceptionV3 (pooled 2048-d features) + a softmax head; inputs in [-1, 1], which is
    InceptionV3's own preprocessing."""
    if image_size < INCEPTION_MIN_SIZE:
        raise ValueError(f"InceptionV3 needs images of at least {INCEPTION_MIN_SIZE} px, "
                         f"got {image_size}")
    backbone = keras.applications.InceptionV3(
        include_top=False, weights=backbone_weights, input_shape=(image_size, image_size, 3),
        pooling="avg")
    inputs = keras.Input((image_size, image_size, 3))
    features = backbone(inputs)
    probs = keras.layers.Dense(num_classes, activation="softmax", name="probs")(features)
    return keras.Model(inputs, [features, probs], name="inception_evaluator")


def load_evaluator(weights: str | Path) -> Evaluator:
    """An evaluator from a local file: a fine-tuned `.keras` classifier written by this
    module, or the ImageNet InceptionV3 weights with the top (`...kernels.h5`)."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--evaluator_weights={weights}: no such file")
    if path.suffix == ".keras":
        model = keras.saving.load_model(str(path), compile=False)
        if len(model.outputs) != 2:
            raise ValueError(f"--evaluator_weights={weights}: expected a model with outputs "
                             f"[features, probs] written by python -m onegan_tf.evaluator")
        return Evaluator(model, "inception-finetuned", {"weights": str(path)})
    try:
        full = keras.applications.InceptionV3(include_top=True, weights=str(path))
    except ValueError as error:
        raise ValueError(
            f"--evaluator_weights={weights}: not ImageNet InceptionV3 weights with the top "
            f"({error}). Weights without the top give no class probabilities: fine-tune them "
            f"first with python -m onegan_tf.evaluator --init_weights={weights} ...") from error
    model = keras.Model(full.inputs, [full.get_layer("avg_pool").output, full.outputs[0]])
    return Evaluator(model, "inception-imagenet", {"weights": str(path)})


def labelled_training_data(config: Config) -> tuple[tf.data.Dataset, int]:
    """(image in [-1, 1] at the config's size, class) examples to fine-tune on, and the class
    count: the object stream of a TFDS dataset, or a folder's eval/ images with labels.csv."""
    from onegan_tf.data import images as image_ops
    if config.dataset in SYNTHETIC_DATASETS:
        raise ValueError(f"--dataset={config.dataset} uses the built-in small evaluator; "
                         f"nothing to fine-tune")
    if config.dataset == "folder":
        from onegan_tf.data import folder
        batch = folder.evaluation_batch(config, 10**9)
        if "child" not in batch:
            raise ValueError(f"--data_dir={config.data_dir}: fine-tuning needs class labels in "
                             f"eval/labels.csv")
        labels = batch["child"].numpy()
        ds = tf.data.Dataset.from_tensor_slices((batch["image"], batch["child"]))
        return ds, int(labels.max()) + 1
    from onegan_tf.data import tfds_data
    classes = tfds_data._builder(config).info.features["label"].num_classes
    ds = tfds_data.object_examples(config, "objects").map(
        lambda ex: (image_ops.to_model_range(ex["image"]), ex["label"]))
    return ds, int(classes)


def finetune(config: Config, init_weights: str | None, output: str | Path, *, steps: int,
             batch_size: int = 32, image_size: int = 299, learning_rate: float = 1e-4,
             log=print) -> Path:
    """Fine-tunes InceptionV3 (+ a new head) on the dataset's labels; writes a `.keras` file."""
    output = Path(output)
    if output.suffix != ".keras":
        raise ValueError(f"--output={output}: must end in .keras")
    if init_weights and not Path(init_weights).expanduser().is_file():
        raise FileNotFoundError(f"--init_weights={init_weights}: no such file")
    ds, classes = labelled_training_data(config)
    model = inception_classifier(classes, image_size,
                                 str(Path(init_weights).expanduser()) if init_weights else None)
    classifier = keras.Model(model.inputs, model.outputs[1])
    classifier.compile(optimizer=keras.optimizers.Adam(learning_rate),
                       loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    resize = lambda x, y: (tf.image.resize(x, [image_size, image_size]), y)  # noqa: E731
    train = (ds.shuffle(2048, seed=config.seed).repeat().map(resize, tf.data.AUTOTUNE)
             .map(lambda x, y: (tf.image.random_flip_left_right(x), y))
             .batch(batch_size).prefetch(tf.data.AUTOTUNE))
    log(f"fine-tuning InceptionV3 on {config.dataset} ({classes} classes) for {steps} steps")
    history = classifier.fit(train, steps_per_epoch=steps, epochs=1, verbose=2)
    log(f"final training accuracy {history.history['accuracy'][-1]:.3f}")
    fileio.atomic_write(output, keras_file_bytes(model))
    return output
