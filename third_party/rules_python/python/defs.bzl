"""Offline stand-in for rules_python's python/defs.bzl: forwards to Bazel 4.2.3's native rules.

BUILD loads py_library/py_binary/py_test from @rules_python, as Bazel 8+ requires; with Bazel 4.2.3
this shim answers that load without a download. On a Bazel without native Python rules (9+),
depend on the real rules_python instead (README "Bazel"); BUILD stays as it is.
"""

def py_library(**attrs):
    native.py_library(**attrs)

def py_binary(**attrs):
    native.py_binary(**attrs)

def py_test(**attrs):
    native.py_test(**attrs)
