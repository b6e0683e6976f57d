"""BUILD keeps up with the code: every module and test file has a target whose deps cover its
`onegan_tf` imports, and every program has a py_binary. Reads BUILD as text; Bazel is not needed.

BUILD is Starlark, whose syntax is a subset of Python's: it is run here with the rule functions
replaced by recorders.
"""

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]  # the source tree, also under `bazel test`
PROGRAMS = ("train", "evaluate", "export", "predict")  # py_binary targets the README promises


def _read_build():
    rules = []

    def recorder(kind):
        def record(*args, **attrs):
            rules.append({"kind": kind, **attrs})

        return record

    def glob(patterns, exclude=()):
        found = {str(p.relative_to(REPO_ROOT)) for pat in patterns for p in REPO_ROOT.glob(pat)}
        return sorted(found - {str(p.relative_to(REPO_ROOT))
                               for pat in exclude for p in REPO_ROOT.glob(pat)})

    kinds = ("py_library", "py_binary", "py_test", "genrule", "filegroup", "exports_files",
             "package", "load", "sh_test", "sh_binary")
    scope = {kind: recorder(kind) for kind in kinds} | {"glob": glob}
    exec(compile((REPO_ROOT / "BUILD").read_text(), "BUILD", "exec"), scope)
    return rules


ALL_RULES = _read_build()
RULES = [rule for rule in ALL_RULES if rule["kind"].startswith("py_")]
TARGETS = {rule["name"]: rule for rule in RULES}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(REPO_ROOT.glob("onegan_tf/**/*.py"))}
TEST_FILES = sorted(REPO_ROOT.glob("tests/**/test_*.py"))


def _library_of(path: Path) -> str | None:
    """The py_library whose srcs hold `path` (None if there is none)."""
    relative = str(path.relative_to(REPO_ROOT))
    owners = [r["name"] for r in RULES
              if r["kind"] == "py_library" and relative in r.get("srcs", [])]
    assert len(owners) <= 1, f"{relative} is in the srcs of several py_library targets: {owners}"
    return owners[0] if owners else None


def _imported_modules(path: Path) -> set[str]:
    """onegan_tf modules `path` imports, anywhere in the file (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("onegan_tf")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("onegan_tf"):
            for alias in node.names:  # `from onegan_tf.data import images` imports a module
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
    return found - {"onegan_tf"}  # the (empty) package __init__ comes with any target


def _builds_models(path: Path) -> bool:
    """Imports the trainer or the model, or takes the conftest's model fixture."""
    tree = ast.parse(path.read_text(), str(path))
    fixtures = {arg.arg for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                for arg in node.args.args}
    return bool(_imported_modules(path) & {"onegan_tf.training.loop", "onegan_tf.training.trainer"}
                or "tiny_model" in fixtures)


def _missing_deps(path: Path, target: dict) -> list[str]:
    deps = {dep.lstrip(":") for dep in target.get("deps", [])}
    needed = {module: _library_of(MODULES[module]) for module in _imported_modules(path)
              if module in MODULES}
    return sorted(f":{lib} (for {module})" for module, lib in needed.items() if lib not in deps)


def test_build_declares_targets():
    assert MODULES and TEST_FILES
    assert {r["kind"] for r in RULES} >= {"py_library", "py_binary", "py_test"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_has_a_library_with_its_deps(module):
    path = MODULES[module]
    library = _library_of(path)
    assert library, f"BUILD has no py_library with srcs {path.relative_to(REPO_ROOT)}"
    assert not _missing_deps(path, TARGETS[library]), (
        f"py_library :{library} misses deps {_missing_deps(path, TARGETS[library])}")


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_every_test_file_has_a_py_test_with_its_deps(path):
    relative = str(path.relative_to(REPO_ROOT))
    tests = [r for r in RULES if r["kind"] == "py_test" and relative in r.get("srcs", [])]
    assert len(tests) == 1, f"BUILD needs exactly one py_test with srcs {relative}"
    test = tests[0]
    assert test["name"] == path.stem
    assert test.get("args") == [relative], "pytest_main.py runs the file named in args"
    assert test.get("main") == "tests/pytest_main.py"
    assert ":conftest" in test.get("deps", [])
    assert not _missing_deps(path, test), f":{test['name']} misses deps {_missing_deps(path, test)}"
    # Files that build or train models get 15 minutes: Bazel kills a "medium" test after 5.
    if _builds_models(path):
        assert test.get("size") in ("large", "enormous") or test.get("timeout") in (
            "long", "eternal"), f":{test['name']} builds models: give it size = \"large\""


def test_every_file_under_tests_is_in_build():
    """Helper scripts that tests run in subprocesses must be in the runfiles too (srcs or data)."""
    named = {f for r in RULES for f in r.get("srcs", []) + r.get("data", [])}
    files = [str(p.relative_to(REPO_ROOT)) for p in sorted(REPO_ROOT.glob("tests/**/*.py"))
             if "__pycache__" not in p.parts]
    missing = [f for f in files if f not in named]
    assert not missing, f"BUILD names these in no srcs or data: {missing}"


def test_every_program_has_a_binary():
    """Modules that run as programs (`if __name__ == "__main__"`) have a py_binary of that name."""
    programs = {p.stem for p in MODULES.values() if '__name__ == "__main__"' in p.read_text()}
    assert programs >= {p for p in PROGRAMS if f"onegan_tf.{p}" in MODULES}
    for program in sorted(programs):
        binary = TARGETS.get(program)
        assert binary and binary["kind"] == "py_binary", f"BUILD has no py_binary :{program}"
        library = _library_of(REPO_ROOT / "onegan_tf" / f"{program}.py")
        assert f":{library}" in binary.get("deps", []), f":{program} must depend on :{library}"


def test_build_names_only_existing_files():
    """A renamed or deleted file left in BUILD breaks `bazel build //...`; catch it here first."""
    generated = {out for r in ALL_RULES for out in r.get("outs", [])}
    named = {src for r in RULES for src in r.get("srcs", []) + [r.get("main")] if src}
    stale = sorted(f for f in named if f not in generated and not (REPO_ROOT / f).is_file())
    assert not stale, f"BUILD names files that do not exist: {stale}"


def test_package_target_exports_every_library_module():
    """`//:onegan_tf` is what a downstream BUILD depends on: it must carry every library module."""
    libraries = {r["name"] for r in RULES if r["kind"] == "py_library" and not r.get("testonly")}
    programs = {n for n in libraries if n.endswith("_main")} | {"onegan_tf"}
    bundled = {dep.lstrip(":") for dep in TARGETS["onegan_tf"].get("deps", [])}
    missing = sorted(libraries - programs - bundled)
    assert not missing, f"//:onegan_tf should depend on {missing}"


def test_build_is_what_the_generator_writes():
    """BUILD is generated (tools/generate_build.py); an edit by hand or a stale BUILD fails."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate_build",
                                                  REPO_ROOT / "tools" / "generate_build.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert (REPO_ROOT / "BUILD").read_text() == generator.generate(), (
        "BUILD is out of date: run python tools/generate_build.py")
