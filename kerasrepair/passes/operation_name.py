"""KR212: a `keras.ops` operation saved with a `name` (Keras 3.11+) that the
target's operation does not take (Keras 3.0-3.10: `Cast.__init__() got an
unexpected keyword argument 'name'`).

An operation in a Functional graph is rebuilt with `cls(**config)`. Up to 3.10
an operation with arguments of its own (`Cast(dtype)`, `Sum(axis, keepdims)`)
has an `__init__` without `name`, and its config leaves the name out; from
3.11 every operation takes `name=` and saves it.
"""

from __future__ import annotations

from .. import pointer
from ..context import Context
from ..edit import Edit
from ..findings import ALWAYS, ERROR, SAFE, Change, Finding, Rule

EXPLANATION = """\
Keras 3.11 and later save the name of every `keras.ops` operation of a
Functional graph in its config, `{"name": "cast_2", "dtype": "float32"}`.
Up to 3.10, an operation with arguments of its own (Cast, Sum, Reshape, ...:
all but two of about 140) has an `__init__` without `name`, so loading such a
graph there fails:

    TypeError: Cast.__init__() got an unexpected keyword argument 'name'

Fix (safe, config only, with `--keras 3.10` or older): the name is dropped
from the operation's arguments, as those releases save it. The graph keeps
its wiring (the operation's entry keeps its own `name`, which the other
layers' calls refer to); the operation object gets a generated name.
"""

RULE = Rule(
    code="KR212",
    name="operation-name",
    severity=ERROR,
    summary="A keras.ops operation saved with a name (Keras 3.11+): 3.0-3.10 cannot rebuild it",
    explanation=EXPLANATION,
    fix=ALWAYS,
    breaks_in=("3.0", "3.10"),
)


def detect(ctx: Context) -> list[Finding]:
    found = []
    for layer in ctx.graph.walk():
        arguments = layer.config
        if not layer.is_operation or "name" not in arguments or len(arguments) < 2:
            continue  # an operation without arguments of its own takes `name` everywhere
        found.append(
            Finding(
                RULE.code,
                f"operation {layer.class_name} '{layer.name}' is saved with its name, which "
                "its __init__ in Keras 3.0-3.10 does not take: load_model fails with "
                f"\"{layer.class_name}.__init__() got an unexpected keyword argument 'name'\"",
                f"{layer.pointer}/config/name",
                ERROR,
                layer=layer.name,
                fix=SAFE,
            )
        )
    return found


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    changes = []
    for finding in findings:
        arguments, key = pointer.parent(edit.config, finding.location)
        name = arguments.pop(key)
        changes.append(Change(RULE.code, finding.location, f"dropped 'name' ({name!r})"))
    return changes
