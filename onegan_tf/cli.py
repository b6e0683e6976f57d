"""absl flags for every `Config` field, shared by the command-line tools.

Every flag is optional: an unset flag keeps the preset's value. `--preset` picks the preset
(default: the one named like `--dataset`, else `shapes`); `--flagfile=flags/cub.flags` works
as everywhere in absl.
"""

from __future__ import annotations

import dataclasses

from absl import flags

from onegan_tf import config as config_lib
from onegan_tf.training.rundir import default_run_dir

FLAGS = flags.FLAGS

_HELP = {
    "dataset": f"one of {', '.join(config_lib.DATASETS)}",
    "norm": f"generator normalisation (Table 3a): {', '.join(config_lib.NORMALIZATIONS)}",
    "strategy": f"tf.distribute strategy: {', '.join(config_lib.STRATEGIES)}",
    "d_norm": f"D_c normalisation after its first conv: {', '.join(config_lib.D_NORMALIZATIONS)}",
    "straight_through": "deviation: reconstruction gradients reach the encoders' class logits",
    "eq13_to_generator": "deviation: the Eq. 13 distances also train the generators",
    "mode_seeking_weight": "not in the paper: weight of the mode-seeking term (0 = off)",
    "mask_parent_info_weight": "not in the paper: weight of the parent-from-mask head Q_p "
                               "(0 = off)",
    "fg_shift": "not in the paper: D_c judges generated images with the foreground layer moved "
                "by a random offset of up to this fraction of the image side (0 = off)",
    "run_dir": "run directory (config, checkpoints, samples, logs); default runs/<preset>",
}


def define_config_flags():
    """Defines --preset and one flag per Config field (default None = keep the preset's)."""
    flags.DEFINE_string("preset", None, f"named preset: {', '.join(config_lib.PRESETS)}")
    for field in dataclasses.fields(config_lib.Config):
        helptext = _HELP.get(field.name, f"Config.{field.name} (preset default if unset)")
        if field.type in ("bool", bool):
            flags.DEFINE_boolean(field.name, None, helptext)
        elif field.type in ("int", int):
            flags.DEFINE_integer(field.name, None, helptext)
        elif field.type in ("float", float):
            flags.DEFINE_float(field.name, None, helptext)
        else:
            flags.DEFINE_string(field.name, None, helptext)


def config_from_flags() -> config_lib.Config:
    """The resolved config: preset, then every flag that was set. Raises ValueError."""
    preset_name = FLAGS.preset
    if preset_name is None:
        dataset = FLAGS.dataset
        preset_name = dataset if dataset in config_lib.PRESETS else "shapes"
    overrides = {f.name: FLAGS[f.name].value for f in dataclasses.fields(config_lib.Config)
                 if FLAGS[f.name].value is not None}
    if not overrides.get("run_dir"):
        overrides["run_dir"] = default_run_dir(preset_name)
    return config_lib.preset(preset_name, **overrides)
