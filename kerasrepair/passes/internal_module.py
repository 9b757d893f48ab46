"""KR213: an object named by the module that defines it (`keras.src...`, as
Keras 3.0.0 writes every object) that Keras 3.11+ will not import that way.

From 3.11, serialization_lib imports a class named by a `keras.src` module
path only if it subclasses KerasSaveable; a learning-rate schedule does not.
Every release finds it under its public module (`keras.optimizers.schedules`),
as later releases write it.
"""

from __future__ import annotations

from .. import objects, pointer
from ..context import Context
from ..edit import Edit
from ..findings import ALWAYS, ERROR, SAFE, Change, Finding, Rule

EXPLANATION = """\
Keras 3.0.0 names every object of config.json by the module that defines it:

    "learning_rate": {"module": "keras.src.optimizers.schedules.learning_rate_schedule",
                      "class_name": "ExponentialDecay", ...}

Later releases write the public module, `keras.optimizers.schedules`. Keras
3.11 and later import a class named by a `keras.src` path only if it is a
KerasSaveable (layers, initializers, optimizers, ... are), and fail on the
others:

    ValueError: Could not deserialize 'keras.src.optimizers.schedules.
    learning_rate_schedule.ExponentialDecay' because it is not a KerasSaveable
    subclass

Fix (safe, config only, with `--keras 3.11` or newer): the public module,
where every Keras 3 release finds the same class.
"""

RULE = Rule(
    code="KR213",
    name="internal-module",
    severity=ERROR,
    summary="A learning-rate schedule under its keras.src module path: 3.11+ will not import it",
    explanation=EXPLANATION,
    fix=ALWAYS,
    breaks_in=("3.11", "3.15"),
)


def detect(ctx: Context) -> list[Finding]:
    found = []
    for path, obj, owner in ctx.serialized_objects:
        module, class_name = obj.get("module"), obj.get("class_name")
        if ctx.target.resolve(module, class_name) is not None:
            continue
        key = objects.internal_key(ctx.saved, ctx.target, module, class_name)
        if key is None:
            continue  # not a built-in the target has: the class rules tell
        if ctx.target.definition(key).get("x-kind") in objects.SAVEABLE_KINDS:
            continue  # imported by its module path
        public = key.rpartition(".")[0]
        where = f" in {owner[0]} '{owner[1]}'" if owner else ""
        found.append(
            Finding(
                RULE.code,
                f"{class_name}{where} is named by its module '{module}', which Keras "
                f"{ctx.target.name} does not import (not a KerasSaveable): load_model fails "
                f"with \"Could not deserialize '{module}.{class_name}' because it is not a "
                'KerasSaveable subclass"',
                pointer.of((*path, "module")),
                ERROR,
                layer=owner[1] if owner else None,
                fix=SAFE,
                hint=f"its public module is '{public}'",
            )
        )
    return found


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    changes = []
    for finding in findings:
        obj, _ = pointer.parent(edit.config, finding.location)
        old = obj["module"]
        public = ctx.saved.resolve(old, obj["class_name"]).rpartition(".")[0]
        obj["module"] = public
        changes.append(Change(RULE.code, finding.location, f"module '{old}' -> '{public}'"))
    return changes
