"""Tests for onegan_tf/nets/discriminators.py: D_bg and D_c on the shared tiny model (output
shapes, the info head / adversarial split of D_c's variables) and their configs."""

import tensorflow as tf

B = 3  # random_images


def test_background_discriminator_outputs(tiny_model, random_images, tiny_config):
    out = tiny_model.background_discriminator(random_images)
    df = tiny_config.df_dim
    assert out["real_fake"].shape == (B, 8, 8, 1)  # patch logits (two stride-2 convs)
    assert out["is_background"].shape == (B, 8, 8, 1)
    assert out["features"].shape == (B, 8, 8, 4 * df)
    assert all(v.dtype == tf.float32 for v in out.values())


def test_object_discriminator_outputs(tiny_model, random_images, tiny_config):
    d_c = tiny_model.object_discriminator
    out = d_c(random_images)
    assert out["real_fake"].shape == (B,)
    assert out["child_logits"].shape == (B, tiny_config.num_children)
    assert out["features"].shape[0] == B and out["features"].shape[1:3] == (8, 8)  # H / 4
    assert all(v.dtype == tf.float32 for v in out.values())
    # The info head and the adversarial variables partition D_c's trainable variables.
    info = {id(v) for v in d_c.info_variables}
    adversarial = {id(v) for v in d_c.adversarial_variables}
    assert info and adversarial and not info & adversarial
    assert info | adversarial == {id(v) for v in d_c.trainable_variables}
    assert all("info" in v.path for v in d_c.info_variables)


def test_discriminator_configs_round_trip(tiny_model, random_images, rebuild_from_config):
    for net in (tiny_model.background_discriminator, tiny_model.object_discriminator):
        clone = rebuild_from_config(net, random_images)
        assert clone.get_config() == net.get_config(), net.name
