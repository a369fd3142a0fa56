"""Where training finds its backends and post-training hooks: by name, in registries their providers fill.

:func:`ssviz.train.train` asks for the backend a config names
(``TrainConfig.backend_name``: ``"plain"``, or ``"dp"`` for DP-SGD) and runs the
post-training hooks it names (``TrainConfig.post_training``: ``"quantize"``). A
module that provides one registers it when it is imported. Training imports
none of them: a name not registered yet is found in :data:`BACKEND_MODULES` or
:data:`HOOK_MODULES` (module names, imported on first use). So defenses plug in
from above, and this module, below both, keeps ``ssviz.train`` and its plugins
from importing each other.

A backend is a class ``(model, config, train_ids, rng, generator)`` (see
:class:`ssviz.train.PlainBackend`); a hook is ``hook(result, remeasure)``: it may
change ``result.model``'s weights, then calls ``remeasure()`` to get
``result.test_loss`` and ``result.final`` measured again, and records what it did
on ``result``.
"""

from __future__ import annotations

import importlib
from typing import Callable

from ssviz.errors import SettingsError

BACKENDS: dict[str, type] = {}
HOOKS: dict[str, Callable] = {}
# name -> the module that registers it when imported
BACKEND_MODULES: dict[str, str] = {"plain": "ssviz.train", "dp": "ssviz.defenses.dp"}
HOOK_MODULES: dict[str, str] = {"quantize": "ssviz.defenses.quantize"}


def register_backend(name: str, cls: type) -> type:
    BACKENDS[name] = cls
    return cls


def register_hook(name: str, hook: Callable) -> Callable:
    HOOKS[name] = hook
    return hook


def find(registry: dict, modules: dict[str, str], name: str, what: str):
    """``registry[name]``, importing the module that registers it first if need be."""
    if name not in registry and name in modules:
        importlib.import_module(modules[name])
    if name not in registry:
        known = ", ".join(sorted(set(registry) | set(modules)))
        raise SettingsError(f"unknown training {what} {name!r}: known are {known}")
    return registry[name]


def backend(name: str) -> type:
    """The training backend registered as ``name``."""
    return find(BACKENDS, BACKEND_MODULES, name, "backend")


def hook(name: str) -> Callable:
    """The post-training hook registered as ``name``."""
    return find(HOOKS, HOOK_MODULES, name, "hook")
