"""Callable modules: `inceptionnet.predict(...)` works although `inceptionnet.predict` is also a module.

Importing a submodule binds it as an attribute of its package, replacing any function of the same
name there; giving the module a `__call__` keeps `inceptionnet.<name>(...)` working either way.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable


def make_module_callable(module_name: str, function: Callable) -> None:
    """Make the module `module_name` (already in sys.modules) call `function` when called."""

    class CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return function(*args, **kwargs)

    sys.modules[module_name].__class__ = CallableModule
