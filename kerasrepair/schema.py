"""JSON Schemas of an archive: loaded once, validators built once and cached.

Two kinds of schema live in `schemas/` (installed as `kerasrepair.schemas`):

* `config.schema.json` and `metadata.schema.json`: the structure Keras 3
  writes, the same for every release. Its `$defs` named after a special
  `class_name` (`__keras_tensor__`, `__numpy__`, ...) apply wherever such an
  object occurs in config.json.
* `keras/X.Y.json`, one per Keras minor release: which `module.class_name`
  the release's loader resolves, and for each class the keyword arguments its
  `from_config` accepts (`additionalProperties: false` where unknown ones are
  rejected) and requires.

Schemas refer to each other by `$id` through a local `referencing` registry;
nothing is fetched from the network.
"""

from __future__ import annotations

import functools
import json
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

CONFIG_ID = "urn:kerasrepair:schemas:config"
METADATA_ID = "urn:kerasrepair:schemas:metadata"
RELEASES_DIR = "keras"
_MINOR = re.compile(r"^(\d+)\.(\d+)(?:\.\d+)?")


def files() -> Path:
    """The folder of the installed schemas (`kerasrepair.schemas`): a folder of
    files, as pip installs it (importlib.resources would say the same, but
    costs 4 ms at every start to import)."""
    from . import schemas

    return Path(schemas.__file__).parent


@functools.cache
def load(name: str) -> dict[str, Any]:
    """A schema file of `schemas/`, parsed once: `config.schema.json`, `keras/3.4.json`."""
    return json.loads((files() / name).read_bytes())


URN = "urn:kerasrepair:schemas:"
_FILES_BY_ID = {CONFIG_ID: "config.schema.json", METADATA_ID: "metadata.schema.json"}


def _document(uri: str) -> dict[str, Any] | None:
    """A schema by its `$id`, from the installed files (None: no such schema)."""
    if uri in _FILES_BY_ID:
        return load(_FILES_BY_ID[uri])
    if uri.startswith(f"{URN}keras:"):
        name = uri.removeprefix(f"{URN}keras:")
        if name in release_names():
            return load(f"{RELEASES_DIR}/{name}.json")
    return None


@functools.cache
def validator(ref: str) -> Draft202012Validator:
    """A validator of the schema at `ref` (`$id` and an optional `#/$defs/...`).
    jsonschema is imported here, when first needed: a valid config never
    needs it (`validity`), and the CLI starts 0.05-0.1 s sooner without it."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator({"$ref": ref}, registry=_registry())


@functools.cache
def _registry():
    """The `referencing` registry of the installed schemas; never the network."""
    from referencing import Registry, Resource
    from referencing.exceptions import NoSuchResource

    def retrieve(uri: str) -> Resource:
        document = _document(uri)
        if document is None:
            raise NoSuchResource(ref=uri)
        return Resource.from_contents(document)

    return Registry(retrieve=retrieve)


def resolve(ref: str) -> Any:
    """The schema at `ref`: a document by `$id`, then a JSON pointer in it
    (percent-decoded, `~1` and `~0` unescaped, as `referencing` reads one).
    KeyError when there is none."""
    uri, _, fragment = ref.partition("#")
    node: Any = _document(uri)
    if node is None:
        raise KeyError(ref)
    if not fragment:
        return node
    for segment in urllib.parse.unquote(fragment).split("/")[1:]:
        segment = segment.replace("~1", "/").replace("~0", "~")
        node = node[int(segment)] if isinstance(node, list) else node[segment]
    return node


_ANNOTATIONS = frozenset(("default", "description", "title", "examples", "x-kind"))
_SHAPE_KEYWORDS = _ANNOTATIONS | {"type", "required", "properties", "additionalProperties"}


@functools.cache
def type_only_properties(ref: str) -> dict[str, bool] | None:
    """For a schema that judges an object by its keys and the JSON types of its
    values only, each property and whether it constrains the type; else None.

    Such a schema uses only `type`, `required`, `properties` whose values say
    at most `type`, and a boolean `additionalProperties` (annotations aside):
    two objects with the same keys and value types get the same errors, so
    results can be shared between them. The argument schemas of releases and
    most structural `$defs` are of this kind.
    """
    definition = resolve(ref)
    if not isinstance(definition, dict) or not set(definition) <= _SHAPE_KEYWORDS:
        return None
    if not isinstance(definition.get("additionalProperties", True), bool):
        return None
    found = {}
    for name, sub in definition.get("properties", {}).items():
        if not isinstance(sub, dict) or not set(sub) <= _ANNOTATIONS | {"type"}:
            return None
        found[name] = "type" in sub
    return found


# What a schema may say for a clean result to hold for every instance alike in
# `objects.signature`: structure, JSON types, and the few value bounds the
# signature records (an integer's sign, a string's emptiness).
_SIGNATURE_KEYWORDS = _ANNOTATIONS | {
    "type",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "anyOf",
    "$ref",
}


@functools.cache
def signature_decides(ref: str) -> bool:
    """Whether the schema at `ref` judges an instance by what its signature
    keeps (keys, list lengths, JSON types, numbers' signs, strings'
    emptiness, `objects.signature`): then an instance alike in signature to a
    valid one is valid too. `minimum` may only be 0 and `minLength` only 1; a
    `const` only on the `class_name` of a special object, which is what its
    `$defs` entry was chosen by."""
    uri, _, fragment = ref.partition("#")
    seen: set[str] = set()

    def decides(node, chosen_by_class_name: bool = False) -> bool:
        if isinstance(node, bool):
            return True
        if not isinstance(node, dict):
            return False
        for keyword, value in node.items():
            bound = keyword == "minimum" and value == 0 or keyword == "minLength" and value == 1
            if keyword not in _SIGNATURE_KEYWORDS and not bound:
                return False
        target = node.get("$ref")
        if target is not None:
            if not target.startswith("#/$defs/"):
                return False
            if target not in seen:
                seen.add(target)
                if not decides(resolve(f"{uri}{target}")):
                    return False
        properties = dict(node.get("properties", {}))
        class_name = properties.pop("class_name", None) if chosen_by_class_name else None
        if isinstance(class_name, dict) and set(class_name) - _ANNOTATIONS - {"const", "type"}:
            return False
        children = [*properties.values(), *node.get("prefixItems", ()), *node.get("anyOf", ())]
        children += [node[key] for key in ("items", "additionalProperties") if key in node]
        return all(decides(child) for child in children)

    special = uri == CONFIG_ID and fragment.rpartition("/")[2].startswith("__")
    return decides(resolve(ref), chosen_by_class_name=special)


@functools.cache
def release_names() -> tuple[str, ...]:
    """The releases with an argument schema, oldest first: "3.0.0", "3.0", ..., "3.15".

    "X.Y" is the newest patch of minor release X.Y; "X.Y.Z" an older patch that
    resolves or accepts other things (3.0.0 does not know `keras.DTypePolicy`).
    """
    names = [
        entry.name.removesuffix(".json")
        for entry in (files() / RELEASES_DIR).iterdir()
        if entry.name.endswith(".json")
    ]
    return tuple(sorted(names, key=release_key))


def release_key(name: str) -> tuple[int, int, float]:
    """Order of schema names: "3.0.0" < "3.0" (the newest 3.0 patch) < "3.1"."""
    major, minor = minor_key(name)
    patch = name.split(".")[2:3]
    return major, minor, int(patch[0]) if patch and patch[0].isdigit() else float("inf")


def name_for(version: str) -> str | None:
    """The schema to check Keras `version` against: "3.0.0" for 3.0.0 when that
    patch has its own, else its minor release's ("3.4" for 3.4.0 or 3.4.1);
    None when there is none (or `version` is not a version)."""
    names = release_names()
    version = version.strip()
    if version in names:
        return version
    try:
        minor = minor_of(version)
    except ValueError:
        return None
    return minor if minor in names else None


def minor_of(version: str) -> str:
    """ "3.4" for "3.4" or "3.4.1"; raises ValueError for anything else."""
    return "{}.{}".format(*minor_key(version))


def minor_key(version: str) -> tuple[int, int]:
    """(3, 4) for "3.4" or "3.4.1"; raises ValueError for anything else."""
    match = _MINOR.match(version.strip()) if isinstance(version, str) else None
    if not match:
        raise ValueError(f"not a Keras version: {version!r}")
    return int(match[1]), int(match[2])


@dataclass(frozen=True)
class ReleaseSchema:
    """The argument schema of one Keras release (`schemas/keras/X.Y.json`)."""

    name: str  # "3.4" (its newest patch), or "3.0.0"
    document: dict[str, Any]

    @property
    def keras_version(self) -> str:
        """The release it was generated from, e.g. "3.4.1" (the newest patch)."""
        return self.document["keras_version"]

    @property
    def id(self) -> str:
        return self.document["$id"]

    def resolve(self, module: str | None, class_name: str) -> str | None:
        """The `$defs` key of the class the release's loader finds, or None.

        Mirrors `serialization_lib._retrieve_class_or_fn`: the exported API
        name `module.class_name`, else the class defined in `module`. Without
        a module (a Keras 2 style entry), the one built-in class of that name.
        """
        if not isinstance(class_name, str) or not isinstance(module, (str, type(None))):
            return None  # any JSON value may stand in a config: none names a class
        names = self.document["names"]
        if module:
            return names.get(f"{module}.{class_name}")
        return self._by_class_name.get(class_name)

    def has_function(self, name: str) -> bool:
        """Whether the release exports the function `name` ("keras.activations.celu")."""
        return isinstance(name, str) and name in self._functions

    def ref(self, key: str) -> str:
        """The `$ref` of a class's argument schema (`<$id>#/$defs/<key>`)."""
        return f"{self.id}#/$defs/{key}"

    def definition(self, key: str) -> dict[str, Any]:
        return self.document["$defs"][key]

    @functools.cached_property
    def _by_class_name(self) -> dict[str, str]:
        """Class names that name one built-in class only, to its `$defs` key."""
        found: dict[str, set[str]] = {}
        for name, key in self.document["names"].items():
            found.setdefault(name.rpartition(".")[2], set()).add(key)
        return {short: keys.pop() for short, keys in found.items() if len(keys) == 1}

    @functools.cached_property
    def _functions(self) -> frozenset[str]:
        return frozenset(self.document["functions"])


@functools.cache
def release(name: str) -> ReleaseSchema:
    """The schema named `name` ("3.4", "3.0.0"); KeyError when there is none."""
    if name not in release_names():
        raise KeyError(name)
    return ReleaseSchema(name, load(f"{RELEASES_DIR}/{name}.json"))


def release_for(version: str) -> ReleaseSchema:
    """The schema to check Keras `version` against ("3.10" or "3.10.0": the
    3.10 schema; "3.0.0": its own); ValueError when kerasrepair has none. The
    one reading of a `--keras X.Y`, for the API and the CLI alike."""
    name = name_for(str(version))
    if name is None:
        known = release_names()
        raise ValueError(
            f"no schema for Keras {version}; kerasrepair knows Keras {known[0]} to {known[-1]}"
        )
    return release(name)


def saved_release(keras_version: str | None) -> ReleaseSchema:
    """The schema of the release that saved an archive (its arguments' defaults),
    or the newest one when kerasrepair has none for it. Keras 2 (tf.keras)
    has one catalog, of 2.15 (`keras2_release`)."""
    if (keras_version or "").startswith(("1.", "2.")):
        return keras2_release()
    return release(name_for(keras_version or "") or release_names()[-1])


def newest() -> ReleaseSchema:
    """The newest Keras 3 release kerasrepair has a schema for."""
    return release(release_names()[-1])


KERAS2_CATALOG = "keras2/2.15.json"


@functools.cache
def keras2_release() -> ReleaseSchema:
    """tf.keras 2.15's classes and their arguments' defaults, as a release
    schema (`schemas/keras2/2.15.json`, generated by
    dev/generate_keras2_catalog.py from TensorFlow 2.15.1): what a Keras 2
    archive's arguments are when left at their defaults. Used only for the
    saving release's defaults, never to check against."""
    catalog = load(KERAS2_CATALOG)
    names: dict[str, str] = {}
    definitions: dict[str, Any] = {}
    for key, entry in catalog["classes"].items():
        for name in (*entry.get("api_names", ()), f"{entry['module']}.{entry['class_name']}"):
            names.setdefault(name, key)
        defaults = entry.get("defaults") or {}
        definitions[key] = {
            "properties": {argument: {"default": value} for argument, value in defaults.items()},
            "x-kind": entry.get("kind"),
        }
    document = {
        "$id": "urn:kerasrepair:schemas:keras2:2.15",
        "keras_version": catalog.get("keras", "2.15.0"),
        "names": names,
        "functions": [],
        "$defs": definitions,
    }
    return ReleaseSchema("2.15", document)


def breaks_in(span: tuple[str, str] | None, release: ReleaseSchema) -> bool:
    """Whether `release` is in a rule's `breaks_in` span (None: every release)."""
    if span is None:
        return True
    first, last = span
    return minor_key(first) <= minor_key(release.name) <= minor_key(last)
