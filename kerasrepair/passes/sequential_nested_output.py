"""KR306: a Functional model inside a Sequential whose single output is saved
as a list of one, which Keras 3.4 and 3.11+ hand on as a list.

A Sequential passes each layer's output to the next as it is. Keras 3.0-3.10
save a Functional model's single output as `[["dense", 0, 0]]`; the loaders
of 3.3 and 3.5-3.10 unwrap a list of one, those of 3.0-3.2, 3.4 and 3.11+ do
not (3.11+ save a single output as the bare triple instead), so the nested
model returns `[tensor]` (keras-team/keras#19959, in 3.4).
"""

from __future__ import annotations

from .. import pointer, schema
from ..context import Context
from ..edit import Edit
from ..findings import ERROR, SAFE, SOMETIMES, Change, Finding, Rule
from ..graph import FUNCTIONAL, SEQUENTIAL, is_tensor_triple

EXPLANATION = """\
A Sequential model holding a Functional model (`Sequential([Input(...),
encoder, Dense(2)])`) passes the Functional model's output to the next layer
as it is. Keras 3.0-3.10 save a Functional model's single output as a list of
one, `"output_layers": [["inner_dense", 0, 0]]`. Loading it, Keras 3.0-3.2,
3.4.0-3.4.1 and 3.11 and later rebuild the nested model with a list of one
output, so it returns `[tensor]`. Unless the next layer is a model itself
(which takes a list of one as its tensor), the model then fails (`Layer
"dense" expects 1 input(s), but it received 2 input tensors`,
keras-team/keras#19959) or predicts a list where it predicted an array.
Keras 3.3 and 3.5-3.10 unwrap the list.

Fix (safe, config only, for 3.4 and 3.11+): the single output is written as
the bare triple `["inner_dense", 0, 0]`, as Keras 3.11+ save it and every
release from 3.4 reads it. Keras 3.0-3.2 read no bare triple (KR305): no
edit of this archive makes them return the array; load it with 3.3 or 3.5+,
or build the model with the functional API.
"""

RULE = Rule(
    code="KR306",
    name="sequential-nested-output",
    severity=ERROR,
    summary="A Functional model in a Sequential with its output as a list of one: "
    "Keras 3.4 and 3.11+ return a list",
    explanation=EXPLANATION,
    fix=SOMETIMES,
    breaks_in=("3.0", "3.15"),  # not 3.3 and 3.5-3.10, whose loaders unwrap the list
)

UNWRAPPING = ((3, 3), (3, 5), (3, 6), (3, 7), (3, 8), (3, 9), (3, 10))
NO_BARE_TRIPLE = (3, 3)  # releases before it read no bare triple (KR305)


def detect(ctx: Context) -> list[Finding]:
    target = schema.minor_key(ctx.target.name)
    if target in UNWRAPPING:
        return []
    fix, hint = SAFE, ""
    if target < NO_BARE_TRIPLE:
        fix, hint = (
            None,
            (
                f"Keras {ctx.target.name} reads no other form of a single output: load the "
                "model with Keras 3.3 or 3.5-3.10 (or 3.11+ after `kerasrepair fix --keras "
                "3.11`), or build it with the functional API"
            ),
        )
    found = []
    for parent in ctx.graph.models():
        if parent.kind != SEQUENTIAL:
            continue
        chained = [layer for layer in parent.layers if layer.class_name != "InputLayer"]
        for index, layer in enumerate(chained):
            following = chained[index + 1] if index + 1 < len(chained) else None
            if layer.submodel is None or layer.submodel.kind != FUNCTIONAL:
                continue
            if following is not None and following.submodel is not None:
                continue  # a model takes a list of one tensor as that tensor
            location = f"{layer.pointer}/config/output_layers"
            try:
                outputs = pointer.get(ctx.config, location)
            except (KeyError, IndexError, TypeError):
                continue
            if not (
                isinstance(outputs, list) and len(outputs) == 1 and is_tensor_triple(outputs[0])
            ):
                continue
            found.append(
                Finding(
                    RULE.code,
                    f"Functional model '{layer.name}' in Sequential '{parent.name}' saves its "
                    f"single output as a list of one, {outputs}; Keras "
                    f"{ctx.target.name} rebuilds it returning a list, so the model fails "
                    "('expects 1 input(s), but it received 2 input tensors') or returns its "
                    "predictions in a list",
                    location,
                    ERROR,
                    layer=layer.name,
                    fix=fix,
                    hint=hint,
                )
            )
    return found


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    changes = []
    for finding in findings:
        (triple,) = pointer.get(edit.config, finding.location)
        pointer.set(edit.config, finding.location, triple)
        changes.append(Change(RULE.code, finding.location, f"wrote the single output as {triple}"))
    return changes
