"""Tests for onegan_tf/config.py: the presets, validation (every bad value names its flag), JSON
and replace(). (The flags themselves: tests/test_train.py.)"""

import dataclasses
import json

import pytest

from onegan_tf import config as config_lib

PAPER = {  # Sec. 5 / FineGAN: 128 px, ngf = ndf = 64, batch 20, Adam 2e-4 (0.5, 0.999)
    "cub": (200, 20),
    "dogs": (120, 12),
    "cars": (196, 14),
}


def test_all_presets_exist_and_validate():
    assert {"tiny", "shapes", "cub", "dogs", "cars"} <= set(config_lib.PRESETS)
    for name in config_lib.PRESETS:
        cfg = config_lib.preset(name)
        assert isinstance(cfg, config_lib.Config)
        assert cfg.validated() is cfg


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_presets_have_paper_values(name):
    cfg = config_lib.preset(name)
    num_children, num_parents = PAPER[name]
    assert cfg.dataset == name
    assert (cfg.num_children, cfg.num_parents) == (num_children, num_parents)
    assert cfg.image_size == 128
    assert cfg.gf_dim == 64 and cfg.df_dim == 64
    assert cfg.batch_size == 20
    assert cfg.learning_rate == pytest.approx(2e-4)
    assert (cfg.beta_1, cfg.beta_2) == (0.5, 0.999)
    assert cfg.total_steps == 600_000
    assert cfg.phase1_steps == 200_000
    assert cfg.fake_recon_start == 200_000
    assert cfg.real_recon_start == 400_000
    # Paper's full method: every loss and both mixups on, multi-phase, real reconstruction.
    assert cfg.multi_phase and cfg.real_recon and cfg.use_bypass and not cfg.phase1_only
    assert cfg.mixup_vectors and cfg.mixup_tensors
    assert cfg.use_rm_loss and cfg.use_vae_loss and cfg.use_per_loss
    assert cfg.bg_adv_weight == 10.0 and cfg.rv_weight == 0.1 and cfg.rm_weight == 2.0
    assert cfg.norm == "glu_layernorm"
    assert cfg.bypass_size == 32  # image_size / 4


def test_presets_for_photographs_tie_e_p_to_the_code_tree():
    """The one method option outside the paper that the paper presets inherit from `clutter`
    (E_p's parent head agreeing with E_c's child on real images); the rest stay off there."""
    for name in ("clutter", "cub", "dogs", "cars"):
        assert config_lib.preset(name).parent_agreement_weight == 1.0, name
    for name in ("cub", "dogs", "cars"):
        cfg = config_lib.preset(name)
        assert (cfg.real_mask_prior_weight, cfg.fg_shift, cfg.d_learning_rate) == (0, 0, 0)
        assert (cfg.mask_area_min, cfg.mask_area_max) == (0.1, 0.9)
    assert config_lib.Config().parent_agreement_weight == 0.0  # the paper's Eq. 12 alone
    assert config_lib.preset("shapes").parent_agreement_weight == 0.0


def test_pose_is_off_unless_asked_for():
    """The paper draws the object where G_fg puts it: no preset but the built-in data's moves it."""
    assert not config_lib.Config().object_pose
    for name in ("tiny", "cub", "dogs", "cars"):
        assert not config_lib.preset(name).object_pose
    assert config_lib.preset("shapes").object_pose
    assert config_lib.Config(pose_shift=0.1).object_pose
    assert config_lib.Config(pose_scale=1.2).object_pose


def test_tiny_preset_is_small_and_has_every_phase():
    cfg = config_lib.preset("tiny")
    assert cfg.image_size == 32 and cfg.gf_dim <= 8 and cfg.df_dim <= 8
    assert 0 < cfg.phase1_steps <= cfg.fake_recon_start < cfg.real_recon_start < cfg.total_steps


def test_preset_overrides_apply():
    cfg = config_lib.preset("cub", batch_size=8, total_steps=10, phase1_steps=2,
                            fake_recon_start=3, real_recon_start=4)
    assert cfg.batch_size == 8 and cfg.total_steps == 10 and cfg.num_children == 200


@pytest.mark.parametrize(
    "overrides, flag",
    [
        ({"dataset": "nope"}, "--dataset"),
        ({"num_parents": 13, "num_children": 12}, "--num_parents"),
        ({"image_size": 48}, "--image_size"),
        ({"image_size": 8}, "--image_size"),
        ({"image_size": 1024}, "--image_size"),
        ({"total_steps": -1}, "--total_steps"),
        ({"phase1_steps": 20, "fake_recon_start": 10}, "--fake_recon_start"),
        ({"fake_recon_start": 25, "real_recon_start": 20}, "--real_recon_start"),
        ({"norm": "groupnorm"}, "--norm"),
        ({"strategy": "tpu"}, "--strategy"),
        ({"mixed_precision": "float64"}, "--mixed_precision"),
        ({"gf_dim": 5}, "--gf_dim"),
        ({"fg_gf_dim": 3}, "--fg_gf_dim"),
        ({"encoder_context": -1}, "--encoder_context"),
        ({"lr_decay_steps": -1}, "--lr_decay_steps"),
        ({"lr_decay_steps": 31, "total_steps": 30}, "--lr_decay_steps"),
        ({"fg_gf_dim": -2}, "--fg_gf_dim"),
        ({"batch_size": 0}, "--batch_size"),
        ({"bypass_divisor": 3}, "--bypass_divisor"),
        ({"bypass_divisor": 16}, "--bypass_divisor"),  # 32 / 16 = 2 < 4
        ({"mask_divisor": 3}, "--mask_divisor"),
        ({"mask_divisor": 16}, "--mask_divisor"),  # a 2 x 2 grid of mask logits at 32 px
        ({"ema_decay": 1.0}, "--ema_decay"),
        ({"learning_rate": 0.0}, "--learning_rate"),
        ({"mask_area_min": 0.9, "mask_area_max": 0.1}, "--mask_area_min"),
        ({"mask_area_mean_max": 0.1}, "--mask_area_mean_max"),  # not above mask_area_min
        ({"mask_area_mean_max": 1.5}, "--mask_area_mean_max"),
        ({"real_mask_area_min": 0.9}, "--real_mask_area_min"),  # not below mask_area_max
        ({"keep_checkpoints": 0}, "--keep_checkpoints"),
        ({"beta_1": 1.0}, "--beta_1"),
        ({"beta_2": -0.1}, "--beta_2"),
        ({"rm_weight": -1.0}, "--rm_weight"),
        ({"pose_rotation": 190.0}, "--pose_rotation"),
        ({"pose_rotation": -1.0}, "--pose_rotation"),
        ({"pose_scale": 0.9}, "--pose_scale"),
        ({"pose_shift": 0.6}, "--pose_shift"),
        ({"pose_shift": 0.1, "z_dim": 3}, "--z_dim"),
    ],
)
def test_invalid_values_raise_naming_the_flag(overrides, flag):
    with pytest.raises(ValueError, match=flag + "="):
        config_lib.preset("tiny", **overrides)
    # Config.replace validates too.
    with pytest.raises(ValueError, match=flag + "="):
        config_lib.preset("tiny").replace(**overrides)


FLOAT_FIELDS = [f.name for f in dataclasses.fields(config_lib.Config) if f.type == "float"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_every_float_field_must_be_finite(value):
    assert "learning_rate" in FLOAT_FIELDS and len(FLOAT_FIELDS) >= 11
    for field in FLOAT_FIELDS:
        with pytest.raises(ValueError, match=f"--{field}={value!r}: must be a finite number"):
            config_lib.preset("tiny", **{field: value})


def test_unknown_preset_names_the_flag():
    with pytest.raises(ValueError, match="--preset="):
        config_lib.preset("imagenet")


def test_error_message_shows_the_bad_value_and_the_limit():
    with pytest.raises(ValueError) as info:
        config_lib.preset("tiny", num_parents=20, num_children=7)
    assert "--num_parents=20" in str(info.value) and "--num_children=7" in str(info.value)


def test_config_is_frozen():
    cfg = config_lib.preset("tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.gf_dim = 8  # type: ignore[misc]
    changed = cfg.replace(gf_dim=8)
    assert changed.gf_dim == 8 and cfg.gf_dim == config_lib.PRESETS["tiny"]["gf_dim"]
    assert hash(cfg) == hash(config_lib.preset("tiny"))  # frozen dataclasses are hashable


@pytest.mark.parametrize("name", sorted(config_lib.PRESETS))
def test_json_round_trip(name):
    cfg = config_lib.preset(name, run_dir="/tmp/somewhere", jit_compile=True)
    text = cfg.to_json()
    assert json.loads(text)["run_dir"] == "/tmp/somewhere"
    assert config_lib.Config.from_json(text) == cfg


def test_from_json_ignores_unknown_keys_and_validates():
    values = json.loads(config_lib.preset("tiny").to_json())
    values["field_from_the_future"] = 1
    assert config_lib.Config.from_json(json.dumps(values)) == config_lib.preset("tiny")
    values["num_parents"] = 99
    with pytest.raises(ValueError, match="--num_parents="):
        config_lib.Config.from_json(json.dumps(values))


def test_bypass_size_follows_divisor():
    assert config_lib.preset("tiny").bypass_size == 8
    assert config_lib.preset("tiny", bypass_divisor=2).bypass_size == 16


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_policy_is_a_validated_flag(policy):
    assert config_lib.preset("tiny", mixed_precision=policy).mixed_precision == policy
    with pytest.raises(ValueError, match="--mixed_precision"):
        config_lib.preset("tiny", mixed_precision="float8")
