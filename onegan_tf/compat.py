"""Workarounds for TensorFlow 2.21 / Keras 3.15 that use private APIs or undo upstream bugs.
Each names the upstream issue or the missing public API; delete it when that is fixed."""

from __future__ import annotations


def weights_bytes(model) -> bytes:
    """What `model.save_weights(path)` writes (weights, optimizer states, step), as bytes.

    The HDF5 file is built in memory and written by `atomic_write`: when h5py itself writes to
    a full disk, its half-closed file objects crash the interpreter at exit (a segfault after
    "No space left on device"). Keras 3.15 has no public API for this: `save_weights` takes
    only a path ending in .weights.h5, so this uses its `H5IOStore` on a BytesIO, as its
    `.keras` archive writer does.
    """
    import io

    from keras.src.saving import saving_lib

    buffer = io.BytesIO()
    store = saving_lib.H5IOStore(buffer, mode="w")
    saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="",
                           visited_saveables=set())
    store.close()
    return buffer.getvalue()


class BuildWithoutBatch:
    """Mixin for a keras.Model that is fully built by its constructor and compile(): fit()
    reads no batch to build it. Under a strategy, Keras 3.15 takes a batch from the
    distributed iterator and `strategy.reduce`s it, which fails for a dict of PerReplica
    values under MultiWorkerMirroredStrategy ("Attempt to convert a value ({'image':
    PerReplica...}) ... to a Tensor", keras-team/keras#20329)."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        super()._maybe_symbolic_build(iterator=None, data_batch=data_batch)


def reducible_logs(logs: dict) -> dict:
    """Multi-worker train_step logs that Keras 3.15 can reduce: it reduces them across workers
    with strategy.reduce(MEAN, v, axis=0), which rejects scalars ("Invalid reduction dimension
    0 for input with 0 dimensions", tensorflow/tensorflow#72388); shape [1] reduces to the
    scalar mean."""
    from keras import ops

    return {k: ops.reshape(v, (1,)) for k, v in logs.items()}


def keras_file_bytes(model) -> bytes:
    """What `model.save("x.keras")` writes, as bytes (then written by `fileio.atomic_write`).
    Keras 3.15's public `keras.saving.save_model` accepts only paths ending in .keras, though
    the archive writer underneath (`saving_lib.save_model`) takes a file object."""
    import io

    from keras.src.saving import saving_lib

    buffer = io.BytesIO()
    saving_lib.save_model(model, buffer)
    return buffer.getvalue()
