"""KR210: an initializer saved under the short name Keras 3.7+ write
(`Orthogonal`, `Identity`), which older releases cannot resolve inside a layer.

Keras 3.0-3.6 name these classes `OrthogonalInitializer` and
`IdentityInitializer`; a layer's initializer is looked up by class name in
keras/src/initializers/__init__.py's ALL_OBJECTS_DICT, which has "Orthogonal"
from 3.4.0 ("# Legacy") and "Identity" from 3.7.0, when the classes were
renamed and the long names kept "For compatibility".
"""

from __future__ import annotations

from .. import objects, pointer
from ..context import Context
from ..edit import Edit
from ..findings import ALWAYS, ERROR, SAFE, Change, Finding, Rule

EXPLANATION = """\
Keras 3.7 renamed two initializers, OrthogonalInitializer to Orthogonal and
IdentityInitializer to Identity, and saves the new names. An LSTM or GRU
(whose recurrent_initializer defaults to Orthogonal) saved by 3.7 or later
therefore fails in Keras 3.0 to 3.3 (and an Identity initializer in 3.0 to
3.6):

    ValueError: Could not interpret initializer identifier: {'module':
    'keras.initializers', 'class_name': 'Orthogonal', ...}

Fix (safe, config only, for such a target, e.g. `--keras 3.3`): the old
name, which every Keras 3 release reads as the same class with the same
arguments.
"""

RULE = Rule(
    code="KR210",
    name="initializer-name",
    severity=ERROR,
    summary="An initializer under its Keras 3.7+ name (Orthogonal): older releases cannot find it",
    explanation=EXPLANATION,
    fix=ALWAYS,
    breaks_in=("3.0", "3.6"),  # per initializer: objects.INITIALIZERS_RENAMED
)


def detect(ctx: Context) -> list[Finding]:
    found = []
    for path, obj, owner in ctx.serialized_objects:
        renamed = objects.older_initializer_name(
            obj.get("module"), obj.get("class_name"), ctx.target
        )
        if renamed is None or owner is None:
            continue
        old, reads_both = renamed
        first = ".".join(map(str, reads_both))
        found.append(
            Finding(
                RULE.code,
                f"initializer {obj['class_name']} in {owner[0]} '{owner[1]}' is named as Keras "
                f"3.7+ name it; Keras {ctx.target.name} knows it as {old} (the short name is "
                f"read from {first}) and fails: 'Could not interpret initializer identifier'",
                pointer.of((*path, "class_name")),
                ERROR,
                layer=owner[1],
                fix=SAFE,
            )
        )
    return found


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    changes = []
    for finding in findings:
        new = pointer.get(edit.config, finding.location)
        old, _ = objects.INITIALIZERS_RENAMED[("keras.initializers", new)]
        pointer.set(edit.config, finding.location, old)
        changes.append(Change(RULE.code, finding.location, f"{new} -> {old}"))
    return changes
