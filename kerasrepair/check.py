"""`check`: what a Keras release will reject in an archive, without loading it.

    archive ─► structure (config.schema.json, metadata.schema.json)
            ─► every serialized object against the target release (keras/X.Y.json):
               is its class known there, are its arguments and activations
            ─► every repair pass's detect, where the pass says that release breaks
            ─► [Finding]

The target release is the one the archive was saved with (metadata.json), or
the one asked for (`--keras 3.4`: "will this load in 3.4?").
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from . import schema
from .archive import CONFIG, METADATA, Archive, open_archive
from .context import Context
from .findings import ERROR, NOTE, SAFE, WARNING, Finding
from .passes import PASSES, unknown_arguments


@dataclass(frozen=True)
class Rule:
    """A check that is not a repair pass: same attributes as a pass module."""

    CODE: str
    NAME: str
    SEVERITY: str
    SUMMARY: str
    EXPLANATION: str
    FIX: str | None = None
    BREAKS_IN: tuple[str, str] | None = None


STRUCTURE = Rule(
    "KR201",
    "config-structure",
    ERROR,
    "config.json is not shaped as Keras writes it",
    """\
config.json is validated against schemas/config.schema.json, the structure Keras 3
writes and its loader reads back: a serialized object (`module`, `class_name`,
`config`, `registered_name`, `build_config`, `compile_config`); for a Functional
model, `layers` each with a `name` and `inbound_nodes` (the dict form
{"args", "kwargs"} or the legacy list form [[layer, node, tensor, kwargs]]),
`input_layers` and `output_layers` as [layer, node, tensor]; for a Sequential
model, `layers`; and the special objects Keras writes for values that are not
JSON (`__keras_tensor__`, `__numpy__`, `__tensor__`, `__lambda__`, `__bytes__`,
`__slice__`, `__ellipsis__`). A config that does not match fails to load in
every release, usually with a KeyError or TypeError far from the cause.""",
)
METADATA_STRUCTURE = Rule(
    "KR202",
    "metadata-structure",
    WARNING,
    "metadata.json is missing or not as Keras writes it",
    """\
metadata.json records the Keras version that saved the archive and when. Keras
does not read it back, so a bad one does not stop a load, but without it the
release an archive needs is unknown: `check` then targets the newest release it
has a schema for (or the one given with --keras).""",
)
MISSING_ARGUMENT = Rule(
    "KR204",
    "missing-argument",
    ERROR,
    "An argument the target Keras release requires is not saved",
    """\
A built-in class whose constructor requires an argument (e.g. Dense's `units`)
cannot be rebuilt from a config that lacks it: the load fails with
`TypeError: __init__() missing 1 required positional argument`. It happens with
hand-edited configs and with arguments a release made mandatory.""",
)
UNKNOWN_CLASS = Rule(
    "KR205",
    "unknown-class",
    ERROR,
    "A Keras class the target release does not have",
    """\
The loader finds a built-in class by its exported name (`module.class_name`, e.g.
`keras.DTypePolicy`) or, failing that, in the module the config names. A class
that appeared in a later release is unknown to an earlier one:

    TypeError: Could not locate class 'DTypePolicy'

(archives saved by Keras 3.6 and newer describe each layer's dtype policy as a
`DTypePolicy` object, which Keras 3.0.0 cannot find; 3.0.5 can). Load the archive with a
release the finding names.""",
)
UNKNOWN_ACTIVATION = Rule(
    "KR208",
    "unknown-activation",
    ERROR,
    "An activation the target Keras release does not have",
    """\
Built-in activations are saved by name (`"activation": "celu"`) and looked up
with `keras.activations.get` when the layer is rebuilt. A name added in a later
release (celu, glu, hard_tanh, squareplus ... in 3.7; hard_silu in 3.0.5) is
unknown to an earlier one, and the load fails:

    ValueError: Could not interpret activation function identifier: 'celu'

Only names the release that saved the archive has are checked (a name neither
release has is a custom activation, registered by the user's code). Load the
archive with the release the finding names.""",
)
CUSTOM_OBJECT = Rule(
    "KR206",
    "custom-object",
    NOTE,
    "A class that is not Keras's: the loader must be given it",
    """\
A class or function from outside Keras (a custom layer, a registered function,
a subclassed model, a class from keras_hub) is not an error of the archive, but
`load_model` can only rebuild it when its code is imported first: with
`@keras.saving.register_keras_serializable()` on the class and its module
imported, or with `custom_objects={"Name": Class}`. The finding names the
module and registered name the loader will look for.""",
)
OTHER_RELEASE = Rule(
    "KR207",
    "no-schema-for-release",
    WARNING,
    "No schema for the release that saved the archive: checked against another",
    """\
kerasrepair has argument schemas for every Keras 3 minor release it was built
with (`kerasrepair check --help` lists them). An archive saved by another
release (a newer one, Keras 2, or one without metadata.json) is checked against
the nearest known release, and arguments that release does not know are reported
as such; pass --keras X.Y to check against the release you will load with.""",
)

# KR203 (unknown-argument) is a repair pass too: passes/unknown_arguments.py
RULES = (STRUCTURE, METADATA_STRUCTURE, MISSING_ARGUMENT, UNKNOWN_CLASS, CUSTOM_OBJECT)
RULES += (OTHER_RELEASE, UNKNOWN_ACTIVATION)

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


@dataclass
class CheckResult:
    path: str
    saved_with: str | None  # the Keras version metadata.json names
    target: str  # the release checked against, e.g. "3.4.1"
    findings: list[Finding] = field(default_factory=list)

    def failed(self, strict: bool = False) -> bool:
        """What `check` exits 1 for: errors (what the release will reject, or load
        wrongly); with `strict`, warnings too. Notes never count."""
        failing = (ERROR, WARNING) if strict else (ERROR,)
        return any(f.severity in failing for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "saved_with": self.saved_with,
            "target": self.target,
            "findings": [f.to_dict() for f in self.findings],
        }


def check_archive(path: str | os.PathLike, keras: str | None = None, passes=PASSES) -> CheckResult:
    """Check the archive at `path` against Keras `keras` ("3.4", "3.4.1"), or
    the release that saved it; raises ArchiveError if it cannot be read, and
    ValueError for a `keras` with no schema."""
    with open_archive(path) as archive:
        return check(archive, keras, passes)


def check(archive: Archive, keras: str | None = None, passes=PASSES) -> CheckResult:
    release, findings = target_release(archive, keras)
    findings += metadata_findings(archive)
    findings += structure_findings(archive.config)
    findings += ObjectChecker(release, saved_release(archive)).findings(archive.config)
    ctx = Context(archive, archive.config)
    for p in passes:
        if _breaks_in(p, release.name):
            findings += p.detect(ctx)
    return CheckResult(str(archive.path), archive.keras_version, release.keras_version, findings)


def saved_release(archive: Archive) -> schema.ReleaseSchema:
    """The schema of the release that saved the archive (the newest one when
    kerasrepair has none for it): what its arguments' defaults were."""
    return schema.release(
        schema.name_for(archive.keras_version or "") or schema.release_names()[-1]
    )


def target_release(
    archive: Archive, keras: str | None
) -> tuple[schema.ReleaseSchema, list[Finding]]:
    """The release schema to check against, and a KR207 finding when the
    archive's own release has none."""
    if keras is not None:
        name = schema.name_for(keras)
        if name is None:
            known = schema.release_names()
            raise ValueError(
                f"no schema for Keras {keras}; kerasrepair knows {known[0]} to {known[-1]}"
            )
        return schema.release(name), []
    release = saved_release(archive)
    saved = archive.keras_version
    if schema.name_for(saved or ""):
        return release, []
    # newer than any known, Keras 2 (loaded by a Keras 3) or unknown: the newest
    said = f"Keras {saved}" if saved else "an unknown Keras release (no keras_version)"
    finding = Finding(
        code=OTHER_RELEASE.CODE,
        severity=OTHER_RELEASE.SEVERITY,
        location=f"{METADATA}:/keras_version",
        message=f"the archive was saved by {said}, which kerasrepair has no schema for; "
        f"checked against Keras {release.keras_version}",
        hint="pass --keras X.Y to check against the release you will load it with",
    )
    return release, [finding]


def metadata_findings(archive: Archive) -> list[Finding]:
    findings = [
        Finding(METADATA_STRUCTURE.CODE, problem, f"{METADATA}:", METADATA_STRUCTURE.SEVERITY)
        for problem in archive.problems
        if METADATA in problem
    ]
    if archive.metadata is not None:
        for error in schema.metadata_validator().iter_errors(archive.metadata):
            findings.append(
                Finding(
                    METADATA_STRUCTURE.CODE,
                    f"metadata.json: {error.message}",
                    f"{METADATA}:{_pointer(error.absolute_path)}",
                    METADATA_STRUCTURE.SEVERITY,
                )
            )
    return findings


def structure_findings(config: Any) -> list[Finding]:
    """config.json against the structural schema (the model, its layers and nodes)."""
    return [
        _structure_finding(error, ()) for error in schema.config_validator().iter_errors(config)
    ]


class ObjectChecker:
    """Every serialized object in a config, against the structural `$defs` and
    one release's argument schemas.

    Validation results are memoized on what a definition constrains (see
    `_memo_key`): the 816 layers of EfficientNetB7 hold 3,750 objects, of which
    the 918 keras tensors are validated one by one and the rest fall into 24
    kinds alike in keys and value types.
    """

    def __init__(self, release: schema.ReleaseSchema, saved: schema.ReleaseSchema):
        self.release = release  # what is checked against
        self.saved = saved  # the release that wrote the archive: its defaults
        self._memo: dict[Any, list] = {}
        self._first_release: dict[tuple[str, str | None], str | None] = {}

    def findings(self, config: Any) -> list[Finding]:
        found: list[Finding] = []
        for path, obj, owner in serialized_objects(config):
            class_name = obj["class_name"]
            if isinstance(class_name, str) and class_name in SPECIAL_OBJECTS:
                found += self._structure(path, obj, class_name)
                continue
            found += self._structure(path, obj, "serialized_object")
            if not isinstance(class_name, str):
                continue  # reported just now
            subject = self._subject(obj, owner)
            if class_name.startswith("__") and class_name.endswith("__"):
                found.append(_special_unknown(path, class_name, subject))
            else:
                found += self._class(path, obj, subject)
        return found

    def _subject(self, obj: dict, owner: tuple[str, str] | None) -> Subject:
        """How findings name `obj`: a layer (model, loss, ...) by its own name,
        anything else by the layer it is in ("GlorotUniform in Dense 'd1'")."""
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

    # ------------------------------------------------------------ structure

    def _structure(self, path: tuple, obj: dict, definition: str) -> list[Finding]:
        ref = f"{schema.CONFIG_ID}#/$defs/{definition}"
        return [_structure_finding(error, path) for error in self._errors(ref, obj)]

    # -------------------------------------------------------------- classes

    def _class(self, path: tuple, obj: dict, subject: Subject) -> list[Finding]:
        class_name, module = obj["class_name"], obj.get("module")
        registered = obj.get("registered_name")
        if isinstance(registered, str) and ">" in registered:
            return [_custom(path, obj, subject)]
        is_keras = module is None or module == "keras" or str(module).startswith("keras.")
        key = self.release.resolve(module, class_name) if is_keras else None
        if key is None:
            if is_keras and module is not None:
                return [self._unknown_class(path, obj, subject)]
            return [_custom(path, obj, subject)]
        arguments = obj.get("config")
        if not isinstance(arguments, dict):
            return []
        found = []
        for error in self._errors(self.release.ref(key), arguments):
            found += self._argument_findings(path, obj, key, error, subject)
        for argument, value in arguments.items():
            if isinstance(value, str) and (
                argument == "activation" or argument.endswith("_activation")
            ):
                found += self._activation(path, argument, value, subject)
        return found

    def _activation(self, path, argument: str, name: str, subject: Subject) -> list[Finding]:
        """An activation saved by name, which the target release must have too."""
        function = f"keras.activations.{name}"
        if self.release.has_function(function) or not self.saved.has_function(function):
            return []
        first = self._first_release_with(None, function)
        return [
            Finding(
                UNKNOWN_ACTIVATION.CODE,
                f"{subject.who} has activation '{name}', unknown to Keras {self.release.name}",
                _pointer((*path, "config", argument)),
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
                fix = SAFE if unknown_arguments.fixable(defaults.get(argument, {}), value) else None
                out.append(
                    Finding(
                        unknown_arguments.CODE,
                        f"{subject.who} has argument '{argument}', unknown to Keras {target}",
                        _pointer((*path, "config", argument)),
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
                    MISSING_ARGUMENT.CODE,
                    f"{subject.who} lacks argument '{missing}', which Keras {target} requires",
                    _pointer((*path, "config")),
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
            UNKNOWN_CLASS.CODE,
            f"{subject.who} is unknown to Keras {target} (module '{module}')",
            _pointer((*path, "class_name")),
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
        """The validation errors of `instance` against the schema at `ref`, memoized."""
        key = _memo_key(ref, instance)
        if key is None:
            return list(schema.validator(ref).iter_errors(instance))
        key = (ref, key)
        if key not in self._memo:
            self._memo[key] = list(schema.validator(ref).iter_errors(instance))
        return self._memo[key]


def serialized_objects(config: Any) -> Iterator[tuple[tuple, dict, tuple[str, str] | None]]:
    """Every dict Keras would deserialize as an object (it has `class_name` and
    `config`), in document order: its path, itself, and the innermost layer
    (class, name) it belongs to. The values of special objects (a numpy array
    can be large) are not walked."""
    stack: list[tuple[Any, tuple, Any]] = [(config, (), None)]
    while stack:
        value, path, owner = stack.pop()
        if isinstance(value, dict):
            if "class_name" in value and "config" in value:
                yield path, value, owner
                class_name = value["class_name"]
                if isinstance(class_name, str) and class_name in SPECIAL_OBJECTS:
                    continue
                arguments = value["config"]
                name = arguments.get("name") if isinstance(arguments, dict) else None
                if isinstance(name, str) and isinstance(class_name, str):
                    owner = (class_name, name)
            items = [(k, v) for k, v in value.items() if isinstance(v, (dict, list))]
            stack.extend((v, (*path, k), owner) for k, v in reversed(items))
        elif isinstance(value, list):
            items = [(i, v) for i, v in enumerate(value) if isinstance(v, (dict, list))]
            stack.extend((v, (*path, i), owner) for i, v in reversed(items))


def _breaks_in(p, minor: str) -> bool:
    span = getattr(p, "BREAKS_IN", None)
    if span is None:
        return True
    first, last = span
    return schema.minor_key(first) <= schema.minor_key(minor) <= schema.minor_key(last)


# ------------------------------------------------------------------ memo keys


def _memo_key(ref: str, instance: dict) -> tuple | None:
    """What of `instance` the schema at `ref` can see: its keys, and the JSON
    type of the values whose property constrains only that (None when the
    schema looks deeper: see `schema.type_only_properties`)."""
    properties = schema.type_only_properties(ref)
    if properties is None:
        return None
    return tuple(
        (k, _json_type(v) if properties.get(k, False) else None)
        for k, v in sorted(instance.items())
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


# ------------------------------------------------------------------ findings


def _pointer(path) -> str:
    """A JSON pointer (RFC 6901) of a path in config.json."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _structure_finding(error, path: tuple) -> Finding:
    where = (*path, *error.absolute_path)
    return Finding(
        STRUCTURE.CODE,
        f"{CONFIG} does not match the Keras structure at {_pointer(where) or '/'}: "
        f"{_short(error.message)}",
        _pointer(where),
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
    return Finding(
        CUSTOM_OBJECT.CODE,
        f"{subject.who} is a custom object ({said}): the loader must be given it",
        _pointer(path),
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
        STRUCTURE.CODE,
        f"'{class_name}' is not a special object Keras writes; the loader will look for a "
        "class of that name and fail",
        _pointer((*path, "class_name")),
        ERROR,
        layer=subject.layer,
        hint="restore the object as Keras wrote it, or re-save the model",
    )
