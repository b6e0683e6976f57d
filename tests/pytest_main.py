"""Runs one pytest file as a Bazel py_test: `pytest_main.py tests/test_x.py [pytest args]`.

Bazel starts tests in the runfiles tree (the workspace root, with BUILD's declared files). Temporary
files go to Bazel's per-test TEST_TMPDIR; results go to Bazel's XML_OUTPUT_FILE so `bazel test`
reports individual test cases; pytest's cache is off (the runfiles tree is not ours to write).
"""

import os
import sys

import pytest


def main(argv: list[str]) -> int:
    if "TEST_TMPDIR" in os.environ:
        os.environ["TMPDIR"] = os.environ["TEST_TMPDIR"]  # before tempfile is first used
    args = ["-p", "no:cacheprovider", "-q", *argv]
    if "XML_OUTPUT_FILE" in os.environ:
        args.append(f"--junitxml={os.environ['XML_OUTPUT_FILE']}")
    return pytest.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
