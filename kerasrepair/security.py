"""What the security rules (KR903-KR909) share: which modules hold no model
code, every string of a config, and the arguments Keras reads as file paths.

Everything here reads config.json as data: nothing is imported, and any JSON
type at any key is tolerated (a `module` that is a number names no module).
"""

from __future__ import annotations

import builtins
import sys
from collections.abc import Callable, Iterator
from typing import Any

from . import pointer

# the packages whose modules Keras 3.9+ import by name (serialization_lib:
# `package in {"keras", "keras_hub", "keras_cv", "keras_nlp"}`)
IMPORTED_BY_KERAS = frozenset(("keras", "keras_hub", "keras_cv", "keras_nlp"))
# third-party packages that hold no model code but run code, fetch or unpickle
# (the standard library is recognised whole: sys.stdlib_module_names)
NOT_MODELLING = frozenset(
    (
        "cloudpickle",
        "dill",
        "joblib",
        "IPython",
        "requests",
        "urllib3",
        "httpx",
        "pip",
        "setuptools",
        "pkg_resources",
        "yaml",
        "__builtin__",  # Python 2's builtins
    )
)
BUILTIN_NAMES = frozenset(dir(builtins))

# the arguments Keras reads as a path or URL when it builds the layer
# (KR907, KR908); what KR905 finds there is theirs to report
FILE_ARGUMENTS = {
    "TFSMLayer": "filepath",
    "StringLookup": "vocabulary",
    "IntegerLookup": "vocabulary",
    "TextVectorization": "vocabulary",
    "IndexLookup": "vocabulary",
}


def not_modelling(module: Any) -> str | None:
    """What module `module` is when it holds no model code (Python's standard
    library or builtins, or a package such as dill); None for anything else,
    a user's own package (`my_project.layers`, `__main__`) included."""
    if not isinstance(module, str):
        return None
    package = module.strip().split(".")[0]
    if package in IMPORTED_BY_KERAS:
        return None
    if package == "builtins":
        return "Python's builtins"
    if package in sys.stdlib_module_names:
        return "Python's standard library"
    if package in NOT_MODELLING:
        return "a package that holds no model code"
    return None


def foreign_fields(obj: dict) -> list[tuple[str, str, str]]:
    """(field, value, what it is) for each `module`, `fn_module` and
    `registered_name` package of a serialized object that names a module
    holding no model code.

    Keras 3.0-3.6 write a custom function as `{"module": "builtins",
    "class_name": "function", "config": "my_loss"}` (the module of Python's
    function type); that is only foreign when the name is one of Python's
    builtins (`eval`, `exec`, `open`), which Keras < 3.9 then import."""
    found = []
    class_name = obj.get("class_name")
    for field in ("module", "fn_module"):
        value = obj.get(field)
        if value == "builtins" and class_name == "function":
            name = obj.get("config")
            if isinstance(name, str) and name.rpartition(">")[2] in BUILTIN_NAMES:
                found.append((field, value, f"Python's builtins ('{name}')"))
            continue
        what = not_modelling(value)
        if what:
            found.append((field, value, what))
    registered = obj.get("registered_name")
    if isinstance(registered, str) and ">" in registered:
        what = not_modelling(registered.split(">")[0])
        if what:
            found.append(("registered_name", registered, what))
    return found


def strings(
    config: Any, wanted: Callable[[str], bool] = lambda text: True
) -> Iterator[tuple[tuple, str]]:
    """Every string of `config` that is `wanted` (values, and the keys of
    objects), in document order, with the path of the value it is or names;
    iterative, any JSON at any key. A path is made only for a wanted string:
    most are not. One iterator per level it is in, so memory grows with the
    config's depth, not with how many items a list holds."""
    # per level: the container's (key, value) pairs still to visit, its link
    # (a link is (parent link, key), () at the root), whether its keys are names
    stack: list[tuple[Iterator, tuple | None, bool]] = [(iter(((None, config),)), None, False)]
    while stack:
        items, link, named = stack[-1]
        for key, value in items:
            here = () if link is None else (link, key)
            if named and isinstance(key, str) and wanted(key):
                yield _path(here), key
            if isinstance(value, str):
                if wanted(value):
                    yield _path(here), value
            elif isinstance(value, dict):
                stack.append((iter(value.items()), here, True))
                break
            elif isinstance(value, list):
                stack.append((enumerate(value), here, False))
                break
        else:
            stack.pop()


def _path(link: tuple) -> tuple:
    keys = []
    while link:
        link, key = link
        keys.append(key)
    return tuple(reversed(keys))


def instances(ctx, class_name: str) -> Iterator[tuple[tuple, dict, tuple[str, str] | None, dict]]:
    """The objects of one class whose `config` is a dict: path, object, owner
    and its arguments (the `config`)."""
    for path, obj, owner in ctx.serialized_objects:
        if obj["class_name"] == class_name and isinstance(obj["config"], dict):
            yield path, obj, owner, obj["config"]


def file_arguments(ctx) -> Iterator[tuple[tuple, dict, str]]:
    """Each layer whose class Keras builds from a file (`FILE_ARGUMENTS`): its
    path, itself, and the argument it reads the file from."""
    for path, obj, _ in ctx.serialized_objects:
        class_name = obj["class_name"]
        argument = FILE_ARGUMENTS.get(class_name) if isinstance(class_name, str) else None
        if argument is not None and isinstance(obj["config"], dict):
            yield path, obj, argument


def file_argument_pointers(ctx) -> frozenset[str]:
    """The pointers of the values `file_arguments` name (a path, a URL, a list)."""
    return frozenset(
        pointer.of((*path, "config", argument)) for path, _, argument in file_arguments(ctx)
    )


def describe(obj: dict, owner: tuple[str, str] | None) -> str:
    """How a finding names a serialized object: "Dense 'dense_1'", or by the
    layer it is in ("GlorotUniform in Dense 'dense_1'")."""
    class_name = obj.get("class_name")
    arguments = obj.get("config")
    name = arguments.get("name") if isinstance(arguments, dict) else None
    if isinstance(name, str):
        return f"{class_name} '{name}'"
    if class_name == "function" and isinstance(arguments, str):
        class_name = f"the function '{arguments}'"
    if owner:
        return f"{class_name} in {owner[0]} '{owner[1]}'"
    return str(class_name)


def layer_of(obj: dict, owner: tuple[str, str] | None) -> str | None:
    """The layer a finding on `obj` is about: its own name, or its owner's."""
    arguments = obj.get("config")
    name = arguments.get("name") if isinstance(arguments, dict) else None
    if isinstance(name, str):
        return name
    return owner[1] if owner else None
