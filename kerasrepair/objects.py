"""Every serialized object of config.json, against one Keras release's schemas.

A serialized object is a dict with `class_name` and `config` (a layer, a model,
an initializer, a dtype policy, a loss ...), or one of the special objects Keras
writes for values that are not JSON (`__keras_tensor__`, `__numpy__`, ...).
`ObjectChecker` validates each against the structural `$defs` and the target
release's argument schema, and reports in the codes of the rules that own them
(KR201 structure, KR203 unknown argument, KR204 missing argument, KR205 unknown
class, KR206 custom object, KR208 unknown activation): the rule modules under
`passes/` pick their own code out of the one walk (`Context.objects`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import pointer, schema, validity
from .archive import CONFIG, Limits
from .findings import ERROR, NOTE, SAFE, Change, Finding
from .graph import OPERATIONS, SUBCLASSED, is_builtin, model_kind

CONFIG_STRUCTURE = "KR201"
METADATA_STRUCTURE = "KR202"
UNKNOWN_ARGUMENT = "KR203"
MISSING_ARGUMENT = "KR204"
UNKNOWN_CLASS = "KR205"
CUSTOM_OBJECT = "KR206"
CLASS_CODES = frozenset(("KR205", "KR206"))  # found without validating anything
NO_SCHEMA_FOR_RELEASE = "KR207"
UNKNOWN_ACTIVATION = "KR208"

# Keras 3.11+ import a class named by its module path when it subclasses
# KerasSaveable: these kinds do (a learning-rate schedule does not)
INTERNAL = "keras.src."
IMPORTS_INTERNAL = (3, 11)
SAVEABLE_KINDS = frozenset(
    ("layer", "model", "initializer", "regularizer", "constraint", "loss", "metric", "optimizer")
)

# initializers named by their short alias (tf.keras; Keras 3.7+), which older
# Keras 3 releases do not resolve inside a layer ("Could not interpret
# initializer identifier"): the name those releases write, which every later
# release still reads, and the first minor release that reads the short one
# (keras/src/initializers/__init__.py: "Orthogonal" from 3.4.0, "Identity" from 3.7.0)
INITIALIZERS_RENAMED = {
    ("keras.initializers", "Orthogonal"): ("OrthogonalInitializer", (3, 4)),
    ("keras.initializers", "Identity"): ("IdentityInitializer", (3, 7)),
}
# ... and the long names, which every release reads (3.7+: ALL_OBJECTS_DICT),
# under the public module or the one that defines them (as 3.0.0 writes)
INITIALIZER_MODULES = ("keras.initializers", "keras.src.initializers.")
INITIALIZERS_KEPT = {old: new for (_, new), (old, _) in INITIALIZERS_RENAMED.items()}

# what Keras writes for values that are not JSON; each has a $defs entry of its own
SPECIAL_OBJECTS = frozenset(
    ("__keras_tensor__", "__numpy__", "__tensor__", "__lambda__", "__bytes__", "__slice__")
) | {"__ellipsis__", "__typespec__", "function"}
# packages whose classes Keras imports by module name; they must be installed
KERAS_PACKAGES = ("keras_hub", "keras_nlp", "keras_cv", "keras_rs", "tf_keras")
# objects whose `name` argument is not theirs to be called by (a dtype policy's is "float32")
UNNAMED_KINDS = frozenset(("dtype_policy", "initializer", "regularizer", "constraint"))


@dataclass(frozen=True)
class Subject:
    """How a finding names the object it is about, and the layer it is in."""

    who: str  # "Dense 'dense_3'", "GlorotUniform in Dense 'dense_3'"
    layer: str | None


def structure_findings(config: Any) -> list[Finding]:
    """config.json against the structural schema (the model, its layers and nodes)."""
    return [_structure_finding(error, ()) for error in validate(schema.CONFIG_ID, config)]


# jsonschema descends recursively, about 7 Python frames per level of JSON (60
# nested Sequential models, 190 levels, need 1,500 frames in all), and a config
# may nest Limits.max_json_depth levels: validation has room for twice that
VALIDATION_FRAMES = 1_000 + 14 * Limits().max_json_depth


def validate(ref: str, instance: Any) -> list:
    """Every error of `instance` against the schema at `ref`, with the room the
    recursion needs: none when its compiled check finds it valid, else
    jsonschema's (written by `validity.errors` where it can). The limit is
    raised once and never lowered (lowering it under another thread's
    validation would break that one)."""
    if sys.getrecursionlimit() < VALIDATION_FRAMES:
        sys.setrecursionlimit(VALIDATION_FRAMES)
    valid = validity.checker(ref)
    if valid is not None and valid(instance):
        return []
    found = validity.errors(ref, instance)
    return found if found is not None else list(schema.validator(ref).iter_errors(instance))


def fixable(saved_default: dict, value) -> bool:
    """Whether dropping an unknown argument keeps the model: its value is the
    default the saving release writes (`{"default": ...}` of its argument schema)."""
    return "default" in saved_default and saved_default["default"] == value


class ObjectChecker:
    """Every serialized object in a config, against the structural `$defs` and
    one release's argument schemas.

    Validation results are memoized on what a definition constrains (see
    `_memo_key`): the 816 layers of EfficientNetB7 hold 3,750 objects, which
    fall into 24 kinds alike in keys and value types, and 918 keras tensors,
    whose definition also bounds values (a node index is not negative): a
    valid one's result is shared by those alike in `signature`, and an
    invalid one is validated on its own.
    """

    def __init__(
        self, release: schema.ReleaseSchema, saved: schema.ReleaseSchema, validate: bool = True
    ):
        self.release = release  # what is checked against
        self.saved = saved  # the release that wrote the archive: its defaults
        # False: only which classes the release has (KR205, KR206), no validation
        self.validate = validate
        self._memo: dict[Any, list] = {}
        self._first_release: dict[tuple[str, str | None], str | None] = {}

    def findings(self, walked: list[tuple[tuple, dict, tuple[str, str] | None]]) -> list[Finding]:
        """The findings of the objects of a config (`serialized_objects`, walked)."""
        found: list[Finding] = []
        for path, obj, owner in walked:
            class_name = obj["class_name"]
            if isinstance(class_name, str) and class_name in SPECIAL_OBJECTS:
                if self.validate:
                    found += self._structure(path, obj, class_name)
                continue
            if self.validate:
                found += self._structure(path, obj, "serialized_object")
            if not isinstance(class_name, str) or not isinstance(obj.get("module", ""), str | None):
                continue  # reported just now (a class or module that is no string)
            if class_name.startswith("__") and class_name.endswith("__"):
                if self.validate:
                    subject = self._subject(obj, owner)
                    found.append(_special_unknown(path, class_name, subject))
            else:
                found += self._class(path, obj, owner)
        return found

    def _subject(self, obj: dict, owner: tuple[str, str] | None) -> Subject:
        """How findings name `obj`: a layer (model, loss, ...) by its own name,
        anything else by the layer it is in ("GlorotUniform in Dense 'd1'").
        Made for a finding only: most objects have none."""
        class_name, module = obj["class_name"], obj.get("module")
        arguments = obj["config"]
        name = arguments.get("name") if isinstance(arguments, dict) else None
        release = self.release
        key = release.resolve(module, class_name)
        if key is None:  # a class the target lacks: what the saving release says of it
            release = self.saved
            key = release.resolve(module, class_name)
        kind = release.definition(key).get("x-kind") if key else None
        if isinstance(name, str) and kind not in UNNAMED_KINDS:
            return Subject(f"{class_name} '{name}'", name)
        if owner:
            return Subject(f"{class_name} in {owner[0]} '{owner[1]}'", owner[1])
        return Subject(class_name, None)

    def imported(self, module: str | None, class_name: str) -> str | None:
        """The `$defs` key of a class named by the module that defines it
        (`keras.src.initializers.random_initializers`, as Keras 3.0.0 writes),
        which Keras 3.11+ import (serialization_lib: a KerasSaveable subclass of
        a module still there) although their schemas list public names only;
        None for a class Keras does not import so (a learning-rate schedule)."""
        if schema.minor_key(self.release.name) < IMPORTS_INTERNAL:
            return None  # the schemas of 3.0-3.10 list the module paths they import
        key = internal_key(self.saved, self.release, module, class_name)
        if key is None or self.release.definition(key).get("x-kind") not in SAVEABLE_KINDS:
            return None
        return key

    # ------------------------------------------------------------ structure

    def _structure(self, path: tuple, obj: dict, definition: str) -> list[Finding]:
        ref = f"{schema.CONFIG_ID}#/$defs/{definition}"
        return [_structure_finding(error, path) for error in self._errors(ref, obj)]

    # -------------------------------------------------------------- classes

    def _class(self, path: tuple, obj: dict, owner: tuple[str, str] | None) -> list[Finding]:
        class_name, module = obj["class_name"], obj.get("module")
        registered = obj.get("registered_name")
        if class_name.startswith("Custom>") and self.release.resolve(
            "keras.optimizers", class_name.removeprefix("Custom>")
        ):
            return []  # tf.keras 2.11+'s name for its own optimizers in an HDF5 model (KR707)
        if isinstance(registered, str) and ">" in registered:
            return [_custom(path, obj, self._subject(obj, owner))]
        is_keras = is_builtin(module)
        if is_keras and str(module).startswith(OPERATIONS):
            return []  # an operation: imported from its module; no argument schema
        key = self.release.resolve(module, class_name) if is_keras else None
        if key is None:
            key = self.imported(module, class_name)
        if (
            key is None
            and str(module).startswith(INITIALIZER_MODULES)
            and class_name in INITIALIZERS_KEPT
        ):
            # the name Keras 3.0-3.6 write, kept "For compatibility" by 3.7+ (a
            # layer's initializer is looked up by class name in ALL_OBJECTS_DICT)
            key = self.release.resolve("keras.initializers", INITIALIZERS_KEPT[class_name])
        if key is None:
            if is_keras and module is not None:
                return [self._unknown_class(path, obj, self._subject(obj, owner))]
            return [_custom(path, obj, self._subject(obj, owner))]
        arguments = obj.get("config")
        if not self.validate or not isinstance(arguments, dict):
            return []
        found = []
        for error in self._errors(self.release.ref(key), arguments):
            found += self._argument_findings(path, obj, key, error, self._subject(obj, owner))
        for argument, value in arguments.items():
            if isinstance(value, str) and (
                argument == "activation" or argument.endswith("_activation")
            ):
                found += self._activation(path, argument, value, obj, owner)
        return found

    def _activation(self, path, argument: str, name: str, obj: dict, owner) -> list[Finding]:
        """An activation saved by name, which the target release must have too."""
        function = f"keras.activations.{name}"
        if self.release.has_function(function) or not self.saved.has_function(function):
            return []
        first = self._first_release_with(None, function)
        subject = self._subject(obj, owner)
        return [
            Finding(
                UNKNOWN_ACTIVATION,
                f"{subject.who} has activation '{name}', unknown to Keras {self.release.name}",
                pointer.of((*path, "config", argument)),
                ERROR,
                layer=subject.layer,
                hint=f'Keras {self.release.name} fails with "Could not interpret activation '
                f'function identifier"; load with Keras {first} or newer',
            )
        ]

    def _argument_findings(self, path, obj, key, error, subject: Subject) -> list[Finding]:
        """Findings of one validation error (shared by alike objects: what is
        said of the object comes from `obj`, not from the error)."""
        target = self.release.name
        class_name, arguments = obj["class_name"], obj["config"]
        if error.validator == "additionalProperties":
            known = self.release.definition(key).get("properties", {})
            saved_key = self.saved.resolve(obj.get("module"), class_name)
            defaults = self.saved.definition(saved_key).get("properties", {}) if saved_key else {}
            out = []
            for argument, value in arguments.items():
                if argument in known:
                    continue
                first = self._first_release_with(key, argument)
                fix = SAFE if fixable(defaults.get(argument, {}), value) else None
                out.append(
                    Finding(
                        UNKNOWN_ARGUMENT,
                        f"{subject.who} has argument '{argument}', unknown to Keras {target}",
                        pointer.of((*path, "config", argument)),
                        ERROR,
                        layer=subject.layer,
                        fix=fix,
                        hint=_unknown_argument_hint(
                            class_name, value, target, first, fix, self.saved
                        ),
                    )
                )
            return out
        if error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else error.message
            return [
                Finding(
                    MISSING_ARGUMENT,
                    f"{subject.who} lacks argument '{missing}', which Keras {target} requires",
                    pointer.of((*path, "config")),
                    ERROR,
                    layer=subject.layer,
                    hint="add the argument to config.json, or re-save the model",
                )
            ]
        return [_structure_finding(error, (*path, "config"))]

    def _unknown_class(self, path, obj, subject: Subject) -> Finding:
        class_name, module = obj["class_name"], obj.get("module")
        target = self.release.name
        first = self._first_release_with(None, f"{module}.{class_name}")
        hint = (
            f"Keras {target} fails with \"Could not locate class '{class_name}'\"; load with "
            f"Keras {first} or newer"
            if first
            else "no Keras release kerasrepair knows has it: is it a custom class?"
        )
        return Finding(
            UNKNOWN_CLASS,
            f"{subject.who} is unknown to Keras {target} (module '{module}')",
            pointer.of((*path, "class_name")),
            ERROR,
            layer=subject.layer,
            hint=hint,
        )

    def _first_release_with(self, key: str | None, name: str) -> str | None:
        """The first release after the target that knows class or function `name`
        (key None) or argument `name` of class `key`, as the hint says it ("3.13", or
        "3.0.5" after 3.0.0)."""
        memo_key = (key or "", name)
        if memo_key not in self._first_release:
            self._first_release[memo_key] = None
            target = schema.release_key(self.release.name)
            for later in schema.release_names():
                if schema.release_key(later) <= target:
                    continue
                other = schema.release(later)
                if key is None:
                    found = name in other.document["names"] or other.has_function(name)
                else:
                    found = name in other.document["$defs"].get(key, {}).get("properties", {})
                if found:
                    same_minor = schema.minor_key(later) == schema.minor_key(self.release.name)
                    self._first_release[memo_key] = other.keras_version if same_minor else later
                    break
        return self._first_release[memo_key]

    # ----------------------------------------------------------- validation

    def _errors(self, ref: str, instance: dict) -> list:
        """The validation errors of `instance` against the schema at `ref`,
        memoized: here, and a valid result for every checker of the process
        (`_VALID`: `batch` checks thousands of archives in one worker)."""
        key = _memo_key(ref, instance)
        if key is not None:
            key = (ref, key)
            if key in _VALID:
                return []
            if key not in self._memo:
                self._memo[key] = validate(ref, instance)
            return _valid_if(key, self._memo[key])
        if not schema.signature_decides(ref):
            return validate(ref, instance)
        # e.g. the keras tensors: alike in signature to a valid one, valid; an
        # invalid one is validated on its own, so its errors name its values
        key = (ref, "valid", signature(instance))
        if key in _VALID:
            return []
        return _valid_if(key, validate(ref, instance))


# (ref, what the schema sees of an instance) found valid, by any checker of
# this process; dropped whole when it grows past _VALID_LIMIT
_VALID: set = set()
_VALID_LIMIT = 200_000


def _valid_if(key: tuple, errors: list) -> list:
    if not errors:
        if len(_VALID) >= _VALID_LIMIT:
            _VALID.clear()
        _VALID.add(key)
    return errors


def internal_key(saved, release, module: Any, class_name: Any) -> str | None:
    """The `$defs` key, in `release`, of a built-in class named by the
    `keras.src` module that defines it (as Keras 3.0.0 writes every object),
    found by what the saving release `saved` knows; None for anything else."""
    if not str(module).startswith(INTERNAL) or str(module).startswith(OPERATIONS):
        return None
    key = saved.resolve(module, class_name)
    return key if key is not None and key in release.document["$defs"] else None


def older_initializer_name(module: Any, class_name: Any, release) -> tuple[str, tuple] | None:
    """For an initializer under its short name that `release` does not resolve
    inside a layer: the name it reads, and the first release that reads the
    short one (`INITIALIZERS_RENAMED`); None otherwise."""
    if not isinstance(module, str) or not isinstance(class_name, str):
        return None
    renamed = INITIALIZERS_RENAMED.get((module, class_name))
    if renamed is None or schema.minor_key(release.name) >= renamed[1]:
        return None
    return renamed


def serialized_objects(config: Any) -> Iterator[tuple[tuple, dict, tuple[str, str] | None]]:
    """Every dict Keras would deserialize as an object (it has `class_name` and
    `config`), in document order: its path, itself, and the innermost layer
    (class, name) it belongs to. The values of special objects (a numpy array
    can be large) are not walked. The walk keeps one iterator per level it is
    in, so its memory grows with the config's depth, not with how many lists
    and dicts a level holds (a million-element list costs nothing here)."""
    # per level: the container's (key, value) pairs still to visit, its path, its owner
    stack: list[tuple[Iterator, tuple | None, Any]] = [(iter([(None, config)]), None, None)]
    while stack:
        items, path, owner = stack[-1]
        for key, value in items:  # noqa: B007 (the pair the loop stops at)
            if isinstance(value, (dict, list)):
                break
        else:
            stack.pop()
            continue
        value_path = () if path is None else (*path, key)
        if isinstance(value, list):
            stack.append((enumerate(value), value_path, owner))
            continue
        if "class_name" in value and "config" in value:
            yield value_path, value, owner
            class_name = value["class_name"]
            if isinstance(class_name, str) and class_name in SPECIAL_OBJECTS:
                continue
            arguments = value["config"]
            name = arguments.get("name") if isinstance(arguments, dict) else None
            if isinstance(name, str) and isinstance(class_name, str):
                owner = (class_name, name)
        stack.append((iter(value.items()), value_path, owner))


# ------------------------------------------------------------------ memo keys


def _memo_key(ref: str, instance: dict) -> tuple | None:
    """What of `instance` the schema at `ref` can see: its keys, and the JSON
    type of the values whose property constrains only that (None when the
    schema looks deeper: see `schema.type_only_properties`)."""
    properties = schema.type_only_properties(ref)
    if properties is None:
        return None
    return tuple(
        [
            (k, _json_type(v)) if properties.get(k, False) else (k, None)
            for k, v in sorted(instance.items())
        ]
    )


def signature(value: Any) -> Any:
    """What `schema.signature_decides` schemas see of a value: its structure,
    keys and list lengths, and of each leaf its JSON type, the sign of a
    number, the emptiness of a string."""
    if isinstance(value, dict):
        return tuple([(k, signature(v)) for k, v in sorted(value.items())])
    if isinstance(value, list):
        return ("[", *[signature(v) for v in value])
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return (_json_type(value), value >= 0)
    if isinstance(value, str):
        return ("string", value == "")
    return ("?", id(value))


# the JSON type of what json.loads makes, by its Python type (a lookup: the
# memo keys take the type of every value of every object)
_JSON_TYPES = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def _json_type(value: Any) -> str:
    found = _JSON_TYPES.get(type(value))
    if found is not None:
        return found
    if isinstance(value, bool):  # subclasses, as JSON Schema's validators see them
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


# ------------------------------------------------------------------ findings


def _structure_finding(error, path: tuple) -> Finding:
    where = (*path, *error.absolute_path)
    return Finding(
        CONFIG_STRUCTURE,
        f"{CONFIG} does not match the Keras structure at {pointer.of(where) or '/'}: "
        f"{_short(error.message)}",
        pointer.of(where),
        ERROR,
        hint="Keras cannot read this part of the config; re-save the model, or restore "
        "what was edited",
    )


def _short(message: str, limit: int = 160) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _custom(path, obj, subject: Subject) -> Finding:
    class_name = obj["class_name"]
    module = obj.get("module")
    registered = obj.get("registered_name")
    package = str(module or "").split(".")[0]
    if package in KERAS_PACKAGES:
        hint = f"install {package.replace('_', '-')} and import {module} before loading"
    else:
        name = registered or class_name
        hint = (
            f"import the code that defines it (registered with "
            f"@keras.saving.register_keras_serializable) or pass "
            f"custom_objects={{'{name}': ...}} to load_model"
        )
    said = f"module '{module}'" + (f", registered as '{registered}'" if registered else "")
    what = "a custom object"
    if path == () and model_kind(obj) == SUBCLASSED:
        what = "a subclassed model (its layers are built by its own code)"
    return Finding(
        CUSTOM_OBJECT,
        f"{subject.who} is {what} ({said}): the loader must be given it",
        pointer.of(path),
        NOTE,
        layer=subject.layer,
        hint=hint,
    )


def _unknown_argument_hint(class_name, value, minor, first, fix, saved) -> str:
    newer = f"load with Keras {first} or newer" if first else f"is {class_name} a custom subclass?"
    said = json.dumps(value)
    if fix == SAFE:
        return (
            f"Keras {minor} rejects it (Unrecognized keyword arguments passed to {class_name}); "
            f"`kerasrepair fix --keras {minor}` drops it ({said} is its default in Keras "
            f"{saved.keras_version}), or {newer}"
        )
    return (
        f"Keras {minor} rejects it (Unrecognized keyword arguments passed to {class_name}); the "
        f"model sets it to {_short(said, 60)}, not its default, so it cannot be dropped: {newer}"
    )


def _special_unknown(path, class_name, subject: Subject) -> Finding:
    return Finding(
        CONFIG_STRUCTURE,
        f"'{class_name}' is not a special object Keras writes; the loader will look for a "
        "class of that name and fail",
        pointer.of((*path, "class_name")),
        ERROR,
        layer=subject.layer,
        hint="restore the object as Keras wrote it, or re-save the model",
    )


def write_policy_names(config: Any, findings: list[Finding], code: str, what: str) -> list[Change]:
    """Each dtype policy object a finding points at, replaced by its name
    (`"mixed_float16"`), which every Keras 3 release reads: KR209 (a 3.4+
    DTypePolicy for 3.0.0) and KR704 (a Keras 2 Policy)."""
    changes = []
    for finding in findings:
        name = pointer.get(config, finding.location)["config"]["name"]
        pointer.set(config, finding.location, name)
        changes.append(Change(code, finding.location, f"{what} -> '{name}'"))
    return changes
