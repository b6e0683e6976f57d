"""Tests for onegan_tf/serving/inference.py: segment, cluster, reconstruct, analyse, remove_object,
translate, generate and mix on the EMA AutoEncoder of the shared tiny model, and the input
checks of the Python API (ValueError naming the argument)."""

import numpy as np
import pytest
from serving_inputs import CHILD_RANGE, FLOAT_RANGE, eight_bit

from onegan_tf.nets.generators import compose
from onegan_tf.serving import inference

BATCH = 4  # held_out_images


@pytest.fixture(scope="module")
def ema(tiny_model):
    return tiny_model.ema


def test_inference_segment_cluster_reconstruct_remove(ema, held_out_images, tiny_config):
    mask = inference.segment(ema, held_out_images).numpy()
    assert mask.shape == (BATCH, 32, 32, 1)
    assert mask.min() >= 0 and mask.max() <= 1
    clusters = {k: v.numpy() for k, v in inference.cluster(ema, held_out_images).items()}
    assert clusters["parent_probs"].shape == (BATCH, tiny_config.num_parents)
    assert clusters["child_probs"].shape == (BATCH, tiny_config.num_children)
    for level, n in (("parent", tiny_config.num_parents), ("child", tiny_config.num_children)):
        probs = clusters[f"{level}_probs"]
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
        assert np.all(probs >= 0)
        assert clusters[level].dtype == np.int32
        assert np.all((clusters[level] >= 0) & (clusters[level] < n))
    np.testing.assert_array_equal(clusters["child"], clusters["child_probs"].argmax(-1))
    # The parent is the child's parent in the code tree; parent_probs sums its children.
    tree_parent = clusters["child"] * tiny_config.num_parents // tiny_config.num_children
    np.testing.assert_array_equal(clusters["parent"], tree_parent)
    members = (np.arange(tiny_config.num_children) * tiny_config.num_parents
               // tiny_config.num_children)
    for p in range(tiny_config.num_parents):
        np.testing.assert_allclose(clusters["parent_probs"][:, p],
                                   clusters["child_probs"][:, members == p].sum(-1), rtol=1e-5)
    np.testing.assert_allclose(clusters["shape_parent_probs"].sum(-1), 1.0, rtol=1e-5)
    recon = {k: v.numpy() for k, v in inference.reconstruct(ema, held_out_images).items()}
    for key in ("image", "foreground", "background"):
        assert recon[key].shape == (BATCH, 32, 32, 3)
        assert recon[key].min() >= -1 and recon[key].max() <= 1
    np.testing.assert_array_equal(recon["mask"], mask)
    # analyse() = reconstruct() + cluster() with one encoder pass.
    both = {k: v.numpy() for k, v in inference.analyse(ema, held_out_images).items()}
    assert set(both) == set(recon) | set(clusters)
    for key, value in {**recon, **clusters}.items():
        np.testing.assert_allclose(both[key], value, atol=1e-6, err_msg=key)
    removed = inference.remove_object(ema, held_out_images).numpy()
    np.testing.assert_array_equal(removed, recon["background"])
    # Inference is deterministic (means, fixed betas) and accepts numpy input.
    again = inference.reconstruct(ema, held_out_images.numpy())["image"].numpy()
    np.testing.assert_array_equal(again, recon["image"])


def test_inference_translate(ema, held_out_images, tiny_config):
    first = inference.translate(ema, held_out_images, 0).numpy()
    last = inference.translate(ema, held_out_images, tiny_config.num_children - 1).numpy()
    assert first.shape == last.shape == (BATCH, 32, 32, 3)
    assert first.dtype == last.dtype == np.float32
    assert np.abs(first).max() <= 1 and np.abs(last).max() <= 1
    assert np.abs(first - last).mean() > 1e-4  # the child code changes the style
    np.testing.assert_array_equal(inference.translate(ema, held_out_images, 0).numpy(), first)
    per_example = inference.translate(ema, held_out_images,
                                      [0, tiny_config.num_children - 1, 0, 0]).numpy()
    np.testing.assert_allclose(per_example[[0, 2, 3]], first[[0, 2, 3]], atol=1e-6)
    np.testing.assert_allclose(per_example[1], last[1], atol=1e-6)


def test_inference_generate(ema, tiny_config):
    child = np.arange(6, dtype=np.int32) % tiny_config.num_children
    z = np.random.default_rng(0).standard_normal((6, tiny_config.z_dim)).astype(np.float32)
    a = {k: v.numpy() for k, v in inference.generate(ema, child, z).items()}
    b = {k: v.numpy() for k, v in inference.generate(ema, child, z).items()}
    for key in ("image", "foreground", "mask", "background"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["image"].shape == (6, 32, 32, 3) and a["mask"].shape == (6, 32, 32, 1)
    assert np.abs(a["image"]).max() <= 1 and 0 <= a["mask"].min() and a["mask"].max() <= 1
    other_z = inference.generate(ema, child, z[::-1].copy())["image"].numpy()
    assert not np.allclose(other_z, a["image"])
    seeded = inference.generate(ema, child, seed=4)["image"].numpy()
    np.testing.assert_array_equal(seeded, inference.generate(ema, child, seed=4)["image"].numpy())
    assert not np.allclose(seeded, inference.generate(ema, child, seed=5)["image"].numpy())


def test_inference_mix(ema, held_out_images, tiny_config):
    backgrounds, objects = held_out_images, held_out_images[::-1]
    mixed = inference.mix(ema, backgrounds, foreground_images=objects).numpy()
    assert mixed.shape == (BATCH, 32, 32, 3) and np.abs(mixed).max() <= 1
    source = inference.reconstruct(ema, objects)
    expected = compose(inference.remove_object(ema, backgrounds), source["foreground"],
                       source["mask"]).numpy()
    np.testing.assert_allclose(mixed, expected, atol=1e-6)
    z = np.zeros((BATCH, tiny_config.z_dim), np.float32)
    generated = inference.mix(ema, backgrounds, child_id=2, z=z).numpy()
    assert generated.shape == (BATCH, 32, 32, 3) and np.abs(generated).max() <= 1
    obj = inference.generate(ema, np.full(BATCH, 2), z)
    expected = compose(inference.remove_object(ema, backgrounds), obj["foreground"],
                       obj["mask"]).numpy()
    np.testing.assert_allclose(generated, expected, atol=1e-6)
    with pytest.raises(ValueError, match="exactly one"):
        inference.mix(ema, backgrounds, foreground_images=objects, child_id=2)
    with pytest.raises(ValueError, match="exactly one"):
        inference.mix(ema, backgrounds)


@pytest.mark.parametrize("call, message", [
    (lambda ae, x: inference.translate(ae, x[:2], 12), CHILD_RANGE + ", got 12"),
    (lambda ae, x: inference.translate(ae, x[:2], [0, -1]), CHILD_RANGE + ", got -1"),
    (lambda ae, x: inference.generate(ae, [99]), CHILD_RANGE + ", got 99"),
    (lambda ae, x: inference.mix(ae, x[:2], child_id=12), CHILD_RANGE),
    (lambda ae, x: inference.segment(ae, eight_bit(x[:2]).astype(np.uint8)),
     r"images: expected float32 \[B, 32, 32, 3\] in \[-1, 1\], got uint8 values; scale"),
    (lambda ae, x: inference.cluster(ae, eight_bit(x[:2])), FLOAT_RANGE + r" \(got min \d+, "
                                                            r"max \d+\); scale 8-bit images"),
    (lambda ae, x: inference.reconstruct(ae, x[:2, :16, :16]),
     r"images: expected float32 \[B, 32, 32, 3\] in \[-1, 1\], got shape \[2, 16, 16, 3\]"),
    (lambda ae, x: inference.remove_object(ae, x[:0]), r"images: empty batch"),
    (lambda ae, x: inference.generate(ae, np.zeros([0], np.int32)), r"child_id: empty batch"),
    (lambda ae, x: inference.generate(ae, [1, 2], np.zeros([2, 5])),
     r"z: expected float32 \[B, 8\] with B = 2"),
], ids=["translate_12", "translate_-1", "generate_99", "mix_12", "uint8", "eight_bit_floats",
        "size_16", "empty_images", "empty_child_ids", "z_size"])
def test_python_api_rejects_bad_inputs_naming_the_argument(call, message, tiny_autoencoder,
                                                           serving_images):
    with pytest.raises(ValueError, match=message):
        call(tiny_autoencoder, serving_images)
