"""Load a standalone module of the generated package (template/labdock/NAME.py) by its path:
modules such as remote.py and gpu.py import nothing from the package, so they are tested alone."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.rendering import REPO


def load(name: str) -> ModuleType:
    qualified = f"labdock_standalone_{name}"
    if qualified not in sys.modules:
        spec = importlib.util.spec_from_file_location(qualified, REPO / "template" / "labdock" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[qualified]
