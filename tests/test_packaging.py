"""The wheel: `pip wheel` of a copy of the source tree holds every onegan_tf module and nothing
else (no tests/, third_party/, flags/), the four console scripts, and dependencies that cover
every third-party import and agree with the pins of requirements.txt."""

import ast
import configparser
import email.parser
import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {
    "onegan-train": "onegan_tf.train:run",
    "onegan-evaluate": "onegan_tf.evaluate:run",
    "onegan-export": "onegan_tf.export:run",
    "onegan-predict": "onegan_tf.predict:run",
}
EXTRAS = {"tfds", "serving", "tflite", "dev"}
# Not copied: what a clean clone lacks (caches, virtual environments, runs, exported models).
SKIPPED = {".git", ".venv", "runs", "build", "dist", "__pycache__", ".pytest_cache",
           ".ruff_cache"}


def _ignore(directory, names):
    skipped = {n for n in names if n in SKIPPED or n.endswith(".egg-info")
               or n.startswith("bazel-")}
    if Path(directory).name == "export":  # export/<name>/<version>/: exported SavedModels
        skipped |= {n for n in names if (Path(directory) / n).is_dir()}
    return skipped


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    source = tmp_path_factory.mktemp("clone") / "onegan_tf"
    shutil.copytree(REPO_ROOT, source, ignore=_ignore)  # setuptools writes build/ into it
    out = tmp_path_factory.mktemp("wheel")
    # Offline with the build backend already installed (TensorFlow needs setuptools); otherwise
    # pip fetches pyproject's build-system requirements.
    here = all(importlib.util.find_spec(m) for m in ("setuptools", "wheel"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out),
         *(["--no-build-isolation"] if here else []), str(source)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (path,) = out.glob("onegan_tf-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def _read(wheel, name: str) -> str:
    (found,) = [n for n in wheel.namelist() if n.endswith(".dist-info/" + name)]
    return wheel.read(found).decode()


def test_wheel_holds_every_module_and_nothing_else(wheel):
    names = set(wheel.namelist())
    modules = {p.relative_to(REPO_ROOT).as_posix() for p in REPO_ROOT.glob("onegan_tf/**/*.py")
               if "__pycache__" not in p.parts}
    assert "onegan_tf/training/loop.py" in modules and "onegan_tf/cli.py" in modules
    assert {n for n in names if not n.split("/")[0].endswith(".dist-info")} == modules
    assert {n.split("/")[0] for n in names} == {"onegan_tf", *{n.split("/")[0] for n in names
                                                               if ".dist-info/" in n}}


def test_wheel_declares_the_console_scripts(wheel):
    entry_points = configparser.ConfigParser()
    entry_points.read_string(_read(wheel, "entry_points.txt"))
    assert dict(entry_points["console_scripts"]) == SCRIPTS


def _requirements(wheel) -> tuple[dict[str, Requirement], dict[str, set[str]], set[str]]:
    """({name: base requirement}, {name: extras that add it}, declared extras) from METADATA."""
    metadata = email.parser.Parser().parsestr(_read(wheel, "METADATA"))
    base, extras = {}, {}
    for line in metadata.get_all("Requires-Dist"):
        requirement = Requirement(line)
        name = requirement.name.lower().replace("_", "-")
        marker = str(requirement.marker or "")
        if marker:
            extras.setdefault(name, set()).add(marker.split('"')[1])
        else:
            base[name] = requirement
    return base, extras, set(metadata.get_all("Provides-Extra"))


def test_wheel_declares_the_dependencies_and_extras(wheel):
    base, extras, declared = _requirements(wheel)
    assert declared == EXTRAS
    assert set(base) == {"tensorflow", "keras", "tensorboard", "absl-py", "numpy", "pillow",
                         "scipy"}
    assert extras["tensorflow-datasets"] == {"tfds"}
    assert extras["tensorflow-serving-api"] == {"serving"}
    assert extras["ai-edge-litert"] == {"tflite"}
    assert {"pytest", "ruff", "onegan-tf"} <= {name for name, e in extras.items() if "dev" in e}
    # requirements.txt stays the pinned set, and every pin satisfies the declared range.
    pins = [line.split("#")[0].strip() for line in
            (REPO_ROOT / "requirements.txt").read_text().splitlines()]
    for pin in map(Requirement, filter(None, pins)):
        name = pin.name.lower()
        assert name in base or name in extras, f"{pin} is not declared in pyproject.toml"
        (version,) = [s.version for s in pin.specifier if s.operator == "=="]
        if name in base:
            assert base[name].specifier.contains(version), (pin, base[name])


def test_every_third_party_import_is_declared(wheel):
    base, extras, _ = _requirements(wheel)
    declared = set(base) | set(extras)
    distributions = importlib.metadata.packages_distributions()
    missing = set()
    for path in REPO_ROOT.glob("onegan_tf/**/*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for top in {name.split(".")[0] for name in names}:
                if top in sys.stdlib_module_names or top in ("onegan_tf", "__future__"):
                    continue
                dists = {d.lower().replace("_", "-") for d in distributions.get(top, [top])}
                if not dists & declared:
                    missing.add(f"{top} ({path.relative_to(REPO_ROOT)})")
    assert not missing, f"imported but not in pyproject's dependencies: {sorted(missing)}"
