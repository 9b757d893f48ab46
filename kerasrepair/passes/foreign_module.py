"""KR904: an object whose module is not model code (`os`, `builtins`, `subprocess`)."""

from __future__ import annotations

from .. import advisories, pointer, security
from ..context import Context
from ..findings import ERROR, NEVER, Finding, Rule

RULE = Rule(
    code="KR904",
    name="foreign-module",
    severity=ERROR,
    summary="An object named by a module that holds no model code (os, builtins, subprocess)",
    explanation="""\
Every object of config.json names the module Keras finds it in (`module`,
and the package part of `registered_name`, `my_package>MyLayer`). Keras
3.0-3.8 import any module named so and take the class or function from it:
a crafted config.json gets `os.system` or `builtins.eval` called while the
model loads, with safe_mode=True (CVE-2025-1550). Keras 3.9+ import only
modules of keras, keras_hub, keras_cv and keras_nlp, and refuse the others
unless the object is registered.

kerasrepair reports, as an error, a module of Python's standard library or
builtins (`os`, `subprocess`, `builtins`, `pickle`, `importlib`, `ctypes`,
`runpy`, `shutil`, `socket` ...) or of a package that holds no model code
(`dill`, `cloudpickle`, `joblib`, `requests` ...): no model class lives there.
`{"module": "builtins", "class_name": "function"}` is how Keras 3.0-3.6 write
a custom function; it is reported only when the function is one of Python's
builtins (`eval`, `exec`, `open`). A tf.keras Lambda's `module` (whose
globals its function is looked up in) is checked too. A user's own package
(`my_project.layers`) and `__main__` (a notebook's registered classes) are
custom objects the loader must be given (KR206), not this.

There is no fix: this is not a model class. Do not load the file.""",
    fix=NEVER,
)

LAMBDA_MODULE_KEYS = ("module", "output_shape_module", "fn_module")


def detect(ctx: Context) -> list[Finding]:
    said = advisories.advised(RULE.code)
    found = []
    for path, obj, owner in ctx.serialized_objects:
        who, layer = security.describe(obj, owner), security.layer_of(obj, owner)
        fields = security.foreign_fields(obj)
        if fields:
            found.append(_finding(pointer.of(path), who, fields, said, layer))
        arguments = obj["config"]
        if obj["class_name"] == "Lambda" and isinstance(arguments, dict):
            for key in LAMBDA_MODULE_KEYS:  # tf.keras's layout
                what = security.not_modelling(arguments.get(key))
                if what:
                    where = pointer.of((*path, "config", key))
                    field = [(key, arguments[key], what)]
                    found.append(_finding(where, who, field, said, layer))
    return found


def _finding(location, who, fields, said, layer) -> Finding:
    named = ", ".join(f"{field} '{value}' ({what})" for field, value, what in fields)
    return Finding(
        RULE.code,
        f"{who} is named by {named}, which holds no model class",
        location,
        ERROR,
        layer=layer,
        hint="this is not a model class: do not load this file (Keras 3.0-3.8 import the "
        f"module and call what it names). Advisories: {said}",
    )
