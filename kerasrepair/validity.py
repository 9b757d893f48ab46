"""Whether an instance is valid against a schema of `schemas/`: a yes or no,
compiled once per schema into Python closures. Deciding that a valid
instance is valid (nearly every one) is then many times faster than
jsonschema's walk, which is needed only for the errors of an invalid one;
and the commonest of those, an object's unknown or missing keys against an
argument schema (a port to an older release), are written here as
jsonschema writes them (`errors`), so that jsonschema is not even imported.

Only the keywords kerasrepair's schemas use are compiled (`KEYWORDS`, with
`const` and `enum` on strings and null): a schema with any other keyword
gets no checker (`checker` returns None), and jsonschema decides alone.
The meaning of each keyword is JSON Schema 2020-12's, as jsonschema gives
it: a boolean is no integer or number, 1.0 is an integer; `properties`,
`required` and `additionalProperties` apply to objects only, `items`,
`prefixItems`, `minItems` and `maxItems` to arrays only, `minimum` to
numbers, `minLength` and `pattern` to strings.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import schema

Check = Callable[[Any], bool]

ANNOTATIONS = frozenset(
    ("default", "description", "title", "examples", "x-kind", "$comment", "$schema", "$defs")
)
# in the order they are tried: the cheap ones first
KEYWORDS = (
    "type",
    "properties",
    "additionalProperties",
    "required",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "minimum",
    "minLength",
    "pattern",
    "const",
    "enum",
    "allOf",
    "anyOf",
    "if",
    "then",
    "else",
    "$ref",
)


class Unsupported(Exception):
    """A schema that says more than `KEYWORDS`: jsonschema alone judges it."""


@functools.cache
def checker(ref: str) -> Check | None:
    """Whether an instance is valid against the schema at `ref` (an `$id`,
    and an optional `#/$defs/...`); None when the schema uses a keyword
    this module does not compile."""
    try:
        return _Compiler().reference(ref)
    except Unsupported:
        return None


def _is_integer(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    return isinstance(x, int) or isinstance(x, float) and x.is_integer()


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


TYPES: dict[str, Check] = {
    "null": lambda x: x is None,
    "boolean": lambda x: isinstance(x, bool),
    "integer": _is_integer,
    "number": _is_number,
    "string": lambda x: isinstance(x, str),
    "array": lambda x: isinstance(x, list),
    "object": lambda x: isinstance(x, dict),
}


def _valid(x: Any) -> bool:
    return True


def _invalid(x: Any) -> bool:
    return False


class _Compiler:
    def __init__(self) -> None:
        self._references: dict[str, Check] = {}

    def reference(self, ref: str) -> Check:
        """The checker of the schema at `ref`; one that refers to itself, on
        the way down, through an indirection filled in once it is built."""
        if ref not in self._references:
            built: list[Check] = []
            self._references[ref] = lambda x: built[0](x)
            uri = ref.partition("#")[0]
            built.append(self.compile(schema.resolve(ref), uri))
        return self._references[ref]

    def compile(self, node: Any, uri: str) -> Check:
        """The checker of a schema `node` of the document `uri`."""
        if node is True:
            return _valid
        if node is False:
            return _invalid
        if not isinstance(node, dict):
            raise Unsupported(repr(node))
        if "$id" in node and node["$id"] != uri:
            raise Unsupported("$id")  # a document within a document
        unknown = set(node).difference(KEYWORDS, ANNOTATIONS, {"$id"})
        if unknown:
            raise Unsupported(", ".join(sorted(unknown)))
        checks = [self._keyword(keyword, node, uri) for keyword in KEYWORDS if keyword in node]
        checks = [check for check in checks if check is not None]
        if not checks:
            return _valid
        return _all(checks)

    def _keyword(self, keyword: str, node: dict, uri: str) -> Check | None:
        value = node[keyword]
        if keyword == "type":
            return _type(value)
        if keyword == "properties":
            return self._properties(value, node.get("additionalProperties", True), uri)
        if keyword == "additionalProperties":
            return None if "properties" in node else self._properties({}, value, uri)
        if keyword == "required":
            names = tuple(value)
            return lambda x: not isinstance(x, dict) or all(name in x for name in names)
        if keyword == "items":
            return self._items(node.get("prefixItems", ()), value, uri)
        if keyword == "prefixItems":
            return None if "items" in node else self._items(value, True, uri)
        if keyword == "minItems":
            return lambda x: not isinstance(x, list) or len(x) >= value
        if keyword == "maxItems":
            return lambda x: not isinstance(x, list) or len(x) <= value
        if keyword == "minimum":
            return lambda x: not _is_number(x) or x >= value
        if keyword == "minLength":
            return lambda x: not isinstance(x, str) or len(x) >= value
        if keyword == "pattern":
            pattern = re.compile(value)
            return lambda x: not isinstance(x, str) or pattern.search(x) is not None
        if keyword == "const":
            return _one_of([value])
        if keyword == "enum":
            return _one_of(value)
        if keyword in ("allOf", "anyOf"):
            checks = [self.compile(sub, uri) for sub in value]
            return _all(checks) if keyword == "allOf" else _any(checks)
        if keyword == "if":
            condition = self.compile(value, uri)
            then = self.compile(node.get("then", True), uri)
            otherwise = self.compile(node.get("else", True), uri)
            return lambda x: then(x) if condition(x) else otherwise(x)
        if keyword in ("then", "else"):
            return None  # with `if`; alone, they say nothing
        if keyword == "$ref":
            return self.reference(_absolute(value, uri))
        raise Unsupported(keyword)

    def _properties(self, properties: dict, additional: Any, uri: str) -> Check:
        named = {name: self.compile(sub, uri) for name, sub in properties.items()}
        other = self.compile(additional, uri)
        if other is _valid:

            def check(x: Any) -> bool:
                if not isinstance(x, dict):
                    return True
                for name, check_value in named.items():
                    if name in x and not check_value(x[name]):
                        return False
                return True

            return check

        def check_all(x: Any) -> bool:
            if not isinstance(x, dict):
                return True
            for name, value in x.items():  # noqa: SIM110 (a loop: no generator's frame per level)
                if not named.get(name, other)(value):
                    return False
            return True

        return check_all

    def _items(self, prefix: Any, items: Any, uri: str) -> Check:
        first = [self.compile(sub, uri) for sub in prefix]
        rest = self.compile(items, uri)

        def check(x: Any) -> bool:
            if not isinstance(x, list):
                return True
            for check_item, item in zip(first, x, strict=False):
                if not check_item(item):
                    return False
            if rest is not _valid:
                for item in itertools.islice(x, len(first), None):
                    if not rest(item):
                        return False
            return True

        return check


def _type(value: Any) -> Check:
    names = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(name, str) and name in TYPES for name in names):
        raise Unsupported(f"type {value!r}")
    return _any([TYPES[name] for name in names])


def _all(checks: list[Check]) -> Check:
    if len(checks) == 1:
        return checks[0]

    def check_all(x: Any) -> bool:
        for check in checks:  # noqa: SIM110 (a loop: no generator's frame per level)
            if not check(x):
                return False
        return True

    return check_all


def _any(checks: list[Check]) -> Check:
    if len(checks) == 1:
        return checks[0]

    def check_any(x: Any) -> bool:
        for check in checks:  # noqa: SIM110 (a loop: no generator's frame per level)
            if check(x):
                return True
        return False

    return check_any


def _one_of(values: list) -> Check:
    """`const` or `enum` of strings and nulls (jsonschema's equality on other
    values, e.g. 1 == 1.0 but not True, is not compiled)."""
    if not all(value is None or isinstance(value, str) for value in values):
        raise Unsupported("const or enum of other values than strings and null")
    strings = frozenset(value for value in values if value is not None)
    null = None in values
    return lambda x: x is None and null or isinstance(x, str) and x in strings


def _absolute(ref: str, uri: str) -> str:
    if ref.startswith("#"):
        return f"{uri}{ref}"
    if ref.startswith(schema.URN):
        return ref
    raise Unsupported(f"$ref {ref}")


@dataclass(frozen=True)
class Error:
    """A validation error, in the attributes of jsonschema's that kerasrepair reads."""

    validator: str  # the keyword that failed
    message: str
    absolute_path: tuple = ()


def errors(ref: str, instance: Any) -> list[Error] | None:
    """jsonschema's errors of an object against a schema of keys and value
    types (`schema.type_only_properties`: an argument schema) when each
    value is of its type: the keys `required` lacks and those
    `additionalProperties: false` refuses, in the schema's order, in
    jsonschema's words. None for any other instance or schema (a value of
    the wrong type: jsonschema writes that one)."""
    shape = _shape(ref)
    if shape is None or not isinstance(instance, dict):
        return None
    definition, type_checks = shape
    for name, is_of_type in type_checks.items():
        if name in instance and not is_of_type(instance[name]):
            return None
    found = []
    for keyword, value in definition.items():
        if keyword == "required":
            found += [
                Error("required", f"{name!r} is a required property")
                for name in value
                if name not in instance
            ]
        elif keyword == "additionalProperties" and value is False:
            known = definition.get("properties", {})
            extras = sorted((name for name in instance if name not in known), key=str)
            if extras:
                said = ", ".join(repr(extra) for extra in extras)
                verb = "was" if len(extras) == 1 else "were"
                message = f"Additional properties are not allowed ({said} {verb} unexpected)"
                found.append(Error("additionalProperties", message))
    return found


@functools.cache
def _shape(ref: str) -> tuple[dict, dict[str, Check]] | None:
    """The definition at `ref` and a type check per property that has one,
    for an object schema of keys and value types; else None."""
    properties = schema.type_only_properties(ref)
    if properties is None:
        return None
    definition = schema.resolve(ref)
    if "type" in definition and not _type(definition["type"])({}):
        return None  # not an object schema
    type_checks = {
        name: _type(definition["properties"][name]["type"])
        for name, typed in properties.items()
        if typed
    }
    return definition, type_checks
