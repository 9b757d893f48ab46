"""What Keras 2 (tf.keras, TensorFlow <= 2.15) writes that Keras 3 reads otherwise.

Shared by the KR7xx rules (`passes/keras2_*`): which archives they apply to,
and the one way they name a built-in class for the target release.
"""

from __future__ import annotations

from typing import Any

from .schema import ReleaseSchema


def applies(archive) -> bool:
    """The KR7xx rules look at archives written by Keras 2, and at legacy
    HDF5 models of any release (converted to `.keras` as Keras 3 lays it out)."""
    return archive.keras2 or archive.format == "h5"


# where in config.json an object without a module is looked up first: a class
# name can be both a loss and a metric (MeanSquaredError, BinaryCrossentropy)
_MODULE_BY_PLACE = {
    "loss": "keras.losses",
    "metrics": "keras.metrics",
    "weighted_metrics": "keras.metrics",
    "optimizer": "keras.optimizers",
}


def builtin_key(release: ReleaseSchema, obj: dict[str, Any], path: tuple = ()) -> str | None:
    """The `$defs` key of the built-in class `obj` names in `release`: by its
    module and class name, else by its class name alone (a Keras 2 module
    path, or none in an HDF5 model's config), else in the module of the
    place it is at in config.json (`path`: a loss under compile_config/loss)."""
    class_name = obj.get("class_name")
    if not isinstance(class_name, str):
        return None
    module = obj.get("module")
    if isinstance(module, str) and not module.startswith("keras"):
        return None  # a custom object's own module
    key = release.resolve(module, class_name) or release.resolve(None, class_name)
    if key is None and len(path) >= 2 and path[0] == "compile_config":
        place = _MODULE_BY_PLACE.get(path[1])
        key = release.resolve(place, class_name) if place else None
    return key


def class_is(release: ReleaseSchema, obj: dict[str, Any], *names: str) -> bool:
    """Whether `obj` is a built-in class of one of `names` ("BatchNormalization")."""
    key = builtin_key(release, obj)
    return key is not None and key.rpartition(".")[2] in names


def module_of(key: str) -> str:
    """The module Keras 3 writes for the class of `$defs` key `key`
    (`keras.layers.Dense` -> `keras.layers`)."""
    return key.rpartition(".")[0]
