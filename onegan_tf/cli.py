"""absl flags for every `Config` field, shared by the command-line tools, and their --help.

Every config flag is optional: an unset flag keeps the preset's value. `--preset` picks the
preset (default: the one named like `--dataset`, else `shapes`); `--flagfile=flags/cub.flags`
works as everywhere in absl. The fields with a fixed set of values (`config.CHOICES`) and
`--preset` are enum flags: another value stops the parse with the Config's own message,
`--dataset='nope': choose one of shapes, clutter, cub, dogs, cars, folder`.

`run(main)` is `app.run(main)` with a --help that lists the command's flags and then the config
flags by group, each with its type and its default per preset:
`--batch_size (int): ... default: 32 (tiny: 4; cub, dogs, cars: 20)`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import textwrap

from absl import app, flags

from onegan_tf import config as config_lib
from onegan_tf.training.rundir import default_run_dir

FLAGS = flags.FLAGS

# The help of every Config field, by group; --help lists them in this order.
GROUPS: dict[str, dict[str, str]] = {
    "data": {
        "dataset": "the images: built-in synthetic (shapes, clutter), a TFDS dataset, or a folder",
        "data_dir": "TFDS data directory (cub, dogs, cars) or the image folder (folder)",
        "image_size": "image side in pixels, a power of two in [16, 512]",
        "num_parents": "N_P, parent clusters (at most --num_children)",
        "num_children": "N_C, child clusters",
        "seed": "random seed of the data order, the codes and the noise",
        "strict_data": "stop at an unreadable input file instead of skipping it with a warning",
    },
    "networks": {
        "gf_dim": "generator width, even; 16*gf_dim channels at 4x4",
        "fg_gf_dim": "width of the object generators G_fg1 and G_fg2 alone, even "
                     "(0 = --gf_dim, the paper)",
        "df_dim": "discriminator width",
        "ef_dim": "encoder width",
        "z_dim": "d_z, the noise size",
        "code_dim": "d_p = d_c = d_bg, the code size",
        "bypass_divisor": "pre-image / bypass resolution = image_size / bypass_divisor",
        "encoder_context": "residual dilated 3x3 convs in E_p at the bypass resolution, so "
                           "that each bypass position sees the whole object (0 = none)",
        "norm": "generator normalisation (Table 3a)",
        "d_norm": "D_c normalisation after its first conv (FineGAN: BatchNorm)",
        "minibatch_stddev": "not in the paper: D_c also sees the batch's feature spread",
        "fg_shift": "not in the paper: D_c judges generated images with the foreground layer "
                    "moved by up to this fraction of the image side (0 = off)",
        "pose_rotation": "not in the paper: generated objects drawn in a canonical pose are "
                         "turned by up to this many degrees, read from z (0 = off)",
        "pose_scale": "not in the paper: ... and scaled by a factor in [1/pose_scale, "
                      "pose_scale] (1 = off)",
        "pose_shift": "not in the paper: ... and shifted by up to this fraction of the image "
                      "side (0 = off)",
        "pose_in_pre_image": "apply the pose to the pre-image A_fg, so that G_fg1/G_fg2 draw "
                             "the posed object (default: the drawn layer is moved)",
        "posed_bypass": "Eq. 13's target for E_p's bypass and mixup 3 use A_fg moved by z's "
                        "pose (default: the canonical A_fg)",
        "pose_blind": "not in the paper: G_fg0 reads z with the pose's dimensions z[:, 0:4] "
                      "zeroed, so it cannot undo the pose's scale",
    },
    "optimisation": {
        "batch_size": "global batch size, over all replicas",
        "learning_rate": "Adam learning rate",
        "d_learning_rate": "the discriminators' Adam learning rate (0: --learning_rate; not "
                           "in the paper when different, the two time-scale rule)",
        "beta_1": "Adam beta_1",
        "beta_2": "Adam beta_2",
        "lr_decay_steps": "lower every learning rate linearly to 0 over the last N steps of "
                          "the schedule (0: constant, the paper)",
        "ema_decay": "decay of the weights' moving average (samples, evaluation, export)",
    },
    "loss weights": {
        "bg_adv_weight": "weight of D_bg's real/fake term in the generator loss (Eq. 10)",
        "rv_weight": "weight of L_Rv, the code-size penalty",
        "rm_weight": "weight of L_RM, the mask prior (Eq. 14)",
        "mask_area_min": "L_RM: smallest mean mask area without penalty",
        "mask_area_max": "L_RM: largest mean mask area without penalty",
        "mask_area_mean_max": "L_RM: largest mean area of a batch's masks without penalty "
                              "(1: off, the paper)",
        "kl_per_dimension": "Eq. 15's KL averaged over the code dimensions (false: summed, "
                            "as written)",
    },
    "schedule": {
        "total_steps": "training steps",
        "phase1_steps": "Phase I length; D clones are loaded when Phase II starts",
        "fake_recon_start": "step at which the fake-image reconstruction path starts",
        "real_recon_start": "step at which the real-image reconstruction path starts",
    },
    "ablations (Tables 1-3)": {
        "multi_phase": "the three-phase schedule (off: every path from step 0)",
        "phase1_only": "train the generation path only",
        "real_recon": "the real-image reconstruction path",
        "use_bypass": "the bypass B_fg / B_bg",
        "mixup_vectors": "mixup 1 and 2 (of the codes)",
        "mixup_tensors": "mixup 3 and 4 (of the pre-images)",
        "use_rm_loss": "the mask prior L_RM",
        "use_vae_loss": "the KL term (Eq. 15)",
        "use_per_loss": "the perceptual loss",
    },
    "deviations from the paper (off by default; docs/design.md)": {
        "straight_through": "reconstruction gradients reach the encoders' class logits",
        "eq13_to_generator": "the Eq. 13 distances also train the generators",
        "mode_seeking_weight": "weight of a mode-seeking term in the generation path (0 = off)",
        "mask_parent_info_weight": "weight of a head Q_p that reads the parent from the "
                                   "generated mask (0 = off)",
        "mask_adversarial_weight": "weight of a mask discriminator D_m: generated masks "
                                   "against the masks predicted for real images (0 = off)",
        "real_mask_prior_weight": "weight of L_RM on the masks predicted for real images "
                                  "(0 = off)",
        "real_mask_area_min": "the area floor of that prior on real images' masks "
                              "(< 0: --mask_area_min)",
        "parent_agreement_weight": "weight of a cross entropy of E_p's parent head against "
                                   "the code-tree parent of E_c's child, on real images "
                                   "(0 = off)",
        "mask_boundary_weight": "weight of the boundary length (total variation) of the "
                                "generated masks (0 = off)",
        "real_mask_edge_weight": "weight of the edge-aware boundary length of the masks "
                                 "predicted for real images (0 = off)",
        "fake_mask_weight": "weight of the mask term of Eq. 16 on generated images "
                            "(1 = the paper)",
        "fake_contrast_pull": "fake reconstruction reads generated objects pulled towards "
                              "the colour of the background under them by up to this "
                              "fraction (0 = off)",
        "fake_real_background": "probability that fake reconstruction reads a generated "
                                "object over a clean real background of the batch "
                                "(0 = off)",
        "real_paste_weight": "weight of a copy-paste term: a real image's object, cut out "
                             "by its predicted mask and pasted over a clean real "
                             "background, judged by D_c (0 = off)",
        "real_removal_weight": "weight of an object-removal term: a real image with its "
                               "predicted mask's region filled by its reconstructed "
                               "background, judged by D_bg as a clean background (0 = off)",
        "mask_divisor": "mask logits averaged over cells of this many pixels, then resized "
                        "back (1 = the paper)",
    },
    "execution": {
        "strategy": "tf.distribute strategy",
        "jit_compile": "compile the training step with XLA",
        "mixed_precision": "Keras dtype policy",
    },
    "run directory and logging": {
        "run_dir": "run directory (config, checkpoints, samples, logs); empty: runs/<preset>",
        "log_every": "steps between progress lines",
        "sample_every": "steps between sample grids",
        "checkpoint_every": "steps between checkpoints",
        "keep_checkpoints": "checkpoints kept",
        "eval_every": "steps between evaluations on held-out data",
        "eval_examples": "held-out images per evaluation",
    },
}


class _ChoiceFlag(flags.EnumFlag):
    """An enum flag that rejects other values with the Config's message (naming the choices)."""

    def parse(self, argument):
        if error := config_lib.choice_error(self.name, argument, self.parser.enum_values):
            raise flags.IllegalFlagValueError(error)
        super().parse(argument)


def define_config_flags(flag_values: flags.FlagValues = FLAGS):
    """Defines --preset and one flag per Config field (default None = keep the preset's)."""
    helps = {name: text for group in GROUPS.values() for name, text in group.items()}
    flags.DEFINE_flag(_ChoiceFlag("preset", None, "named preset", list(config_lib.PRESETS)),
                      flag_values)
    for field in dataclasses.fields(config_lib.Config):
        name, helptext = field.name, helps[field.name]  # KeyError: give the new field a help
        if name in config_lib.CHOICES:
            flags.DEFINE_flag(_ChoiceFlag(name, None, helptext, config_lib.CHOICES[name]),
                              flag_values)
        elif field.type in ("bool", bool):
            flags.DEFINE_boolean(name, None, helptext, flag_values=flag_values)
        elif field.type in ("int", int):
            flags.DEFINE_integer(name, None, helptext, flag_values=flag_values)
        elif field.type in ("float", float):
            flags.DEFINE_float(name, None, helptext, flag_values=flag_values)
        else:
            flags.DEFINE_string(name, None, helptext, flag_values=flag_values)


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


# --- --help ---------------------------------------------------------------------------------------
def value_text(value) -> str:
    """A value as it is written on the command line (`true`, `0.0002`, `''`)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value or "''"
    return repr(value)


def preset_defaults(field: str) -> str:
    """`32 (tiny: 4; cub, dogs, cars: 20)`: the Config default, then the presets that differ."""
    default = getattr(config_lib.Config(), field)
    differing: dict[str, list[str]] = {}
    for name in config_lib.PRESETS:
        value = getattr(config_lib.preset(name), field)
        if value != default:
            differing.setdefault(value_text(value), []).append(name)
    others = "; ".join(f"{', '.join(names)}: {text}" for text, names in differing.items())
    return value_text(default) + (f" ({others})" if others else "")


def _describe(flag, default: str | None, helptext: str | None = None, indent: str = "  "):
    """One flag: `--name (type): help`, then its default, wrapped to 100 columns."""
    enum = isinstance(flag, flags.EnumFlag)
    kind = "|".join(flag.parser.enum_values) if enum else flag.flag_type()
    helptext = (helptext or flag.help).removeprefix(f"<{kind}>: ")  # EnumFlag's own prefix
    helptext = " ".join(helptext.split())  # absl's multi flags add a newline
    name = f"[no]{flag.name}" if flag.boolean else flag.name
    lines = textwrap.wrap(f"--{name} ({kind}): {helptext}", 100,
                          initial_indent=indent, subsequent_indent=indent + "    ")
    if default is not None:
        lines += textwrap.wrap(f"default: {default}", 100, initial_indent=indent + "    ",
                               subsequent_indent=indent + "      ")
    return lines


def help_text(module, flag_values: flags.FlagValues = FLAGS) -> str:
    """--help of a command module: its docstring, its own flags, the config flags by group."""
    module_name = module.__name__
    if module_name == "__main__":  # absl files the flags defined there under sys.argv[0]
        module_name = sys.argv[0]
    lines = [(module.__doc__ or "").rstrip(), "", "flags:"]
    for flag in flag_values.get_flags_for_module(module_name):
        lines += _describe(flag, None if flag.default is None else value_text(flag.default))
    if any(f.name == "preset" for f in flag_values.get_flags_for_module(__name__)):
        lines += ["", "config flags (each one optional: an unset flag keeps the preset's value; "
                      "defaults per preset):"]
        lines += _describe(flag_values["preset"], "the preset named like --dataset, else shapes")
        for group, fields in GROUPS.items():
            lines += ["", f"  {group}:"]
            for name in fields:
                lines += _describe(flag_values[name], preset_defaults(name), fields[name],
                                   indent="    ")
    lines += ["", "--flagfile=FILE reads flags from FILE, one per line. --helpfull lists every "
                  "flag, absl's included."]
    return "\n".join(lines)


class _HelpFlag(flags.BooleanFlag):
    """--help / -? / --helpshort printing `help_text`. absl's own lists only the flags defined
    in the module named like sys.argv[0]: none for a console script, and no config flags."""

    def __init__(self, name: str, short_name: str | None, module):
        super().__init__(name, False, "show this help", short_name=short_name,
                         allow_override=True)
        self.module = module

    def parse(self, argument):
        super().parse(argument)
        if self.value:
            try:
                sys.stdout.write(help_text(self.module) + "\n")
                sys.stdout.flush()
            except BrokenPipeError:  # `--help | head`: no traceback, as absl's
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)  # as absl's --help and --helpfull


def _parse_flags(argv):
    """absl's parse, but a bad flag exits 2 with one `error:` line, as a bad config does (absl:
    exit 1, "FATAL Flags parsing error")."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def run(main) -> None:
    """`app.run(main)` with `help_text` as --help and exit status 2 for a bad flag; for a
    command module's entry function."""
    module = sys.modules[main.__module__]
    app.define_help_flags()  # absl's; then ours replace --help, -? and --helpshort
    for name, short_name in (("help", "?"), ("helpshort", None)):
        flags.DEFINE_flag(_HelpFlag(name, short_name, module), module_name="absl.app")
    app.run(main, flags_parser=_parse_flags)


def command(main, define_flags):
    """The entry function of a command module (its console script, and `__main__`): defines
    the module's flags, then `run(main)`."""

    def entry() -> None:
        define_flags()
        run(main)

    entry.__doc__ = f"python -m {main.__module__}"
    return entry


def missing_arguments(argv, *required: str, note: str = "") -> bool:
    """A command's own check of its command line: positional arguments are a usage error
    (absl's UsageError); each flag of `required` must be set, else one line "error: --x is
    required" on stderr and True (the caller exits 2)."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    missing = [f"--{name}" for name in required if not FLAGS[name].value]
    if missing:
        print(f"error: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required"
              + (f" {note}" if note else ""), file=sys.stderr)
    return bool(missing)


def failed(error) -> int:
    """Reports an error that ends a command (one line on stderr); returns exit status 2."""
    print(f"error: {error}", file=sys.stderr)
    return 2
