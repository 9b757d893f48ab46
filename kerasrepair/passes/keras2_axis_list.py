"""KR703: BatchNormalization's `axis` saved as a list, which Keras 3 takes as an int.

tf.keras writes `"axis": [3]`; Keras 3's BatchNormalization calls `int(axis)`:

    TypeError: int() argument must be a string, a bytes-like object or a
    real number, not 'list'
"""

from __future__ import annotations

from .. import keras2, pointer
from ..context import Context
from ..edit import Edit
from ..findings import ERROR, SAFE, SOMETIMES, Change, Finding, Rule

EXPLANATION = """\
tf.keras 2.x normalises BatchNormalization's `axis` to a list and saves it so:
`"axis": [3]`. Keras 3's BatchNormalization takes one axis, an int, and fails
on the list:

    TypeError: int() argument must be a string, a bytes-like object or a real
    number, not 'list'

Fix (safe, config only): a list of one axis becomes that axis. A list of
several axes (which Keras 3's BatchNormalization cannot express) is reported:
use LayerNormalization or reshape in your code.
"""

RULE = Rule(
    code="KR703",
    name="keras2-axis-list",
    severity=ERROR,
    summary="BatchNormalization axis saved as a list by Keras 2: Keras 3 wants an int",
    explanation=EXPLANATION,
    fix=SOMETIMES,
)


def detect(ctx: Context) -> list[Finding]:
    if not keras2.applies(ctx.archive):
        return []
    found = []
    for path, obj, _owner in ctx.serialized_objects:
        arguments = obj.get("config")
        if not isinstance(arguments, dict) or not isinstance(arguments.get("axis"), list):
            continue
        if not keras2.class_is(ctx.target, obj, "BatchNormalization"):
            continue
        axis = arguments["axis"]
        single = len(axis) == 1 and isinstance(axis[0], int)
        found.append(
            Finding(
                RULE.code,
                f"BatchNormalization '{arguments.get('name')}' has axis {axis}: Keras 3 "
                "takes one int",
                pointer.of((*path, "config", "axis")),
                ERROR,
                layer=arguments.get("name"),
                fix=SAFE if single else None,
                hint="" if single else "normalise over one axis, or use LayerNormalization",
            )
        )
    return found


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    changes = []
    for finding in findings:
        (axis,) = pointer.get(edit.config, finding.location)
        pointer.set(edit.config, finding.location, axis)
        changes.append(Change(RULE.code, finding.location, f"[{axis}] -> {axis}"))
    return changes
