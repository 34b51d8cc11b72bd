"""The framework packages these tests drive are real parts: under CI (``CI=true``, where
``.ci/frameworks`` installs tests/frameworks/requirements.txt) a missing one fails the test;
elsewhere it skips it."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def require(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is missing (see .ci/frameworks): {exc}")
        pytest.skip(f"{module} is not installed (tests/frameworks/requirements.txt): {exc}")
