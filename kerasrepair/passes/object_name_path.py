"""KR909: an object name that is a path (`..`, `/`, `\\`, NUL), where Keras makes names paths."""

from __future__ import annotations

import re

from .. import advisories, keras2, pointer, security
from ..context import Context
from ..findings import ERROR, NEVER, Finding, Rule

RULE = Rule(
    code="KR909",
    name="object-name-path",
    severity=ERROR,
    summary="A layer or object name that is a path ('..', '/', '\\', NUL)",
    explanation="""\
Keras turns names into file and group paths while it saves and loads a
model: a layer named `..` (or `..\\..\\x`, whose backslashes Keras makes
slashes) makes Keras 3.14's DiskIOStore create and write directories
outside its working directory (CVE-2026-12479), and a NUL ends a path early
in the C libraries underneath. Keras itself never writes such a name: Keras
3 refuses '/' in a layer's name, and its automatic names are words, digits
and underscores.

kerasrepair checks the name of every object (`name`, in its config and
beside it) and its registered name. It reports '/', '\\', a NUL, and '..' as
a path component ('..', '../x', 'x\\..'); two dots inside a name ('v1..2')
are one harmless component. A tf.keras layer named with '/' (DenseNet's
`conv1/conv`) is KR709's, which renames it.

There is no fix: the name is how the loader addresses the object. Do not
load the file unless you trust its source.""",
    fix=NEVER,
)

FIELDS = (("config", "name"), ("name",), ("registered_name",))
SEPARATORS = re.compile(r"[/\\]")


def problem(name: str) -> str | None:
    """What makes `name` a path; None for a name."""
    if "\x00" in name:
        return "a NUL character"
    if ".." in SEPARATORS.split(name):
        return "a '..' path component"
    if "\\" in name:
        return "a backslash"
    if "/" in name:
        return "a '/'"
    return None


def detect(ctx: Context) -> list[Finding]:
    said = advisories.advised(RULE.code)
    keras2_archive = keras2.applies(ctx.archive)
    found = []
    for path, obj, owner in ctx.serialized_objects:
        for field in FIELDS:
            name = obj.get(field[0])
            if len(field) == 2:
                name = name.get(field[1]) if isinstance(name, dict) else None
            if not isinstance(name, str):
                continue
            what = problem(name)
            if what is None or (keras2_archive and what == "a '/'" and field != FIELDS[2]):
                continue  # a tf.keras layer name with '/' is KR709's
            found.append(
                Finding(
                    RULE.code,
                    f"{obj['class_name']} named {name!r} ({'/'.join(field)}): the name has "
                    f"{what}, and Keras makes names paths",
                    pointer.of((*path, *field)),
                    ERROR,
                    layer=security.layer_of(obj, owner),
                    hint="Keras never writes such a name: do not load this file unless you trust "
                    f"its source. Advisories: {said}",
                )
            )
            break  # one finding per object
    return found
