"""The command-line interface: --help documents every config flag (type, default per preset),
the choice fields are enum flags that name their values, the console scripts have entry
functions. Subprocesses are `--help` / `--dry_run` runs, which never import TensorFlow."""

import dataclasses
import importlib
import inspect
import re
import subprocess
import sys
import tomllib

import pytest
from absl import flags

from onegan_tf import cli
from onegan_tf import config as config_lib

FIELDS = {f.name: f for f in dataclasses.fields(config_lib.Config)}


def _run(args, env, cwd, *, code=None):
    """`python -m onegan_tf.train ARGS`, or `python -c CODE ARGS` (as a console script runs)."""
    command = ["-c", code] if code else ["-m", "onegan_tf.train"]
    return subprocess.run([sys.executable, *command, *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def _fresh_flags() -> flags.FlagValues:
    flag_values = flags.FlagValues()
    cli.define_config_flags(flag_values)
    return flag_values


def _blocks(help_text: str) -> dict[str, str]:
    """{flag name: its entry in --help, continuation lines joined}."""
    blocks, name = {}, None
    for line in help_text.splitlines():
        match = re.match(r"\s*--(?:\[no\])?(\w+) \(", line)
        if match:
            name = match.group(1)
            blocks[name] = line.strip()
        elif name and line.startswith("      "):
            blocks[name] += " " + line.strip()
        else:
            name = None
    return blocks


def _written(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value or "''"
    return repr(value)


def _per_preset(block: str) -> dict[str, str]:
    """"default: 32 (tiny: 4; cub, dogs, cars: 20)" -> {preset: value as written}."""
    match = re.search(r"default: (\S+)(?: \((.*)\))?$", block)
    assert match, block
    values = dict.fromkeys(config_lib.PRESETS, match.group(1))
    for entry in filter(None, (match.group(2) or "").split("; ")):
        names, value = entry.rsplit(": ", 1)
        for name in names.split(", "):
            values[name] = value
    return values


def test_every_config_field_has_one_help_in_one_group():
    grouped = [name for group in cli.GROUPS.values() for name in group]
    assert sorted(grouped) == sorted(FIELDS)  # none missing, none twice, none stale


def test_help_lists_every_config_flag_with_type_and_default_per_preset(subprocess_env,
                                                                        repo_root):
    result = _run(["--help"], subprocess_env, repo_root)
    assert result.returncode == 1, result.stderr  # absl's status for --help
    blocks = _blocks(result.stdout)
    assert "dry_run" in blocks and "restart_unreadable" in blocks  # the command's own flags
    assert blocks["preset"].startswith(f"--preset ({'|'.join(config_lib.PRESETS)}):")
    kinds = {"bool": "bool", "int": "int", "float": "float", "str": "string"}
    for name, field in FIELDS.items():
        assert name in blocks, f"--{name} missing from --help"
        kind = "|".join(config_lib.CHOICES[name]) if name in config_lib.CHOICES else \
            kinds[field.type]
        assert f"{name} ({kind}): " in blocks[name], blocks[name]
        expected = {p: _written(getattr(config_lib.preset(p), name)) for p in config_lib.PRESETS}
        assert _per_preset(blocks[name]) == expected, blocks[name]
    # Grouped as Config is: each group's title, in order, and its fields below it.
    titles = [result.stdout.index(f"\n  {title}:\n") for title in cli.GROUPS]
    assert titles == sorted(titles)
    assert "default: 32 (tiny: 4; cub, dogs, cars: 20)" in blocks["batch_size"]


def test_help_of_a_console_script_lists_its_flags(subprocess_env, repo_root, tmp_path):
    # A console script imports the module: absl's own --help would list no flags at all.
    code = "import sys; from onegan_tf.{} import run; sys.exit(run())"
    train = _run(["--help"], subprocess_env, tmp_path, code=code.format("train"))
    assert train.stdout.startswith("Train OneGAN:"), train.stderr
    assert {"dry_run", "dataset", "batch_size"} <= set(_blocks(train.stdout))
    export = _run(["--help"], subprocess_env, tmp_path, code=code.format("export"))
    assert set(_blocks(export.stdout)) == {"run_dir", "export_dir", "tflite",
                                           "representative_examples"}, export.stderr
    assert "config flags" not in export.stdout


@pytest.mark.parametrize("name", [*config_lib.CHOICES, "preset"])
def test_choice_flags_are_enums_that_name_the_allowed_values(name):
    choices = config_lib.CHOICES.get(name, tuple(config_lib.PRESETS))
    flag_values = _fresh_flags()
    assert isinstance(flag_values[name], flags.EnumFlag)
    assert flag_values[name].parser.enum_values == list(choices)
    with pytest.raises(flags.IllegalFlagValueError) as error:
        flag_values(["prog", f"--{name}=nope"])
    assert str(error.value) == f"--{name}='nope': choose one of {', '.join(choices)}"
    flag_values = _fresh_flags()
    flag_values(["prog", f"--{name}={choices[-1]}"])
    assert flag_values[name].value == choices[-1]


def test_other_flags_keep_their_type():
    flag_values = _fresh_flags()
    types = {"bool": "bool", "int": "int", "float": "float", "str": "string"}
    for name, field in FIELDS.items():
        if name not in config_lib.CHOICES:
            assert flag_values[name].flag_type() == types[field.type], name
        assert flag_values[name].default is None  # unset: the preset's value


def test_bad_flags_exit_2_with_one_line_naming_the_flag(subprocess_env, repo_root, tmp_path):
    bad = _run(["--dataset=nope", "--dry_run", f"--run_dir={tmp_path / 'run'}"],
               subprocess_env, repo_root)
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr == ("error: --dataset='nope': choose one of shapes, clutter, cub, dogs, "
                          "cars, folder\n")
    flagfile = tmp_path / "bad.flags"
    flagfile.write_text("--preset=tiny\n--mixed_precision=float64\n")
    bad = _run([f"--flagfile={flagfile}", "--dry_run"], subprocess_env, repo_root)
    assert bad.returncode == 2 and "--mixed_precision='float64': choose one of float32" in \
        bad.stderr
    bad = _run(["--batch_size=many", "--dry_run"], subprocess_env, repo_root)
    assert bad.returncode == 2 and bad.stderr.startswith("error: flag --batch_size=many: ")
    assert not (tmp_path / "run").exists()


def test_console_scripts_have_entry_functions(repo_root):
    scripts = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"onegan-train": "onegan_tf.train:run",
                       "onegan-evaluate": "onegan_tf.evaluate:run",
                       "onegan-export": "onegan_tf.export:run",
                       "onegan-predict": "onegan_tf.predict:run"}
    for target in scripts.values():
        module_name, function = target.split(":")
        entry = getattr(importlib.import_module(module_name), function)
        assert callable(entry) and not inspect.signature(entry).parameters, target
    # Importing a command module defines no flags (each does, in run()).
    assert "dry_run" not in flags.FLAGS and "export_dir" not in flags.FLAGS
