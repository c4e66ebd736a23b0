"""The estimator registry: every built-in plugin by name.

Plugins register themselves with :func:`avsync.estimators.base.register` when their module is
imported; importing this module imports the built-in ones (all light: learned plugins import
torch or ONNX Runtime only when they load weights)."""
from __future__ import annotations

from ..errors import UsageError
from . import closures, events, fcn, lips, motion  # noqa: F401  (registers the built-in plugins)
from .base import _REGISTRY, Estimator, EstimatorOptions
from .syncnet import plugin  # noqa: F401


def available_methods() -> list[str]:
    return ["auto", *sorted(_REGISTRY)]


def get_estimator(name: str, options: EstimatorOptions = EstimatorOptions()) -> Estimator:
    return estimator_class(name)(options)


def estimator_class(name: str) -> type[Estimator]:
    if name not in _REGISTRY:
        raise UsageError(f"unknown method {name!r}; choose from {', '.join(available_methods())}")
    return _REGISTRY[name]
