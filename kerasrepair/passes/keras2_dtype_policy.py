"""KR704: a mixed-precision `Policy` object as a layer's dtype (Keras 2).

tf.keras saves `"dtype": {"class_name": "Policy", "config": {"name":
"mixed_float16"}}`; Keras 3 names its class DTypePolicy, in another module,
and every release reads the policy's name.
"""

from __future__ import annotations

from .. import keras2, objects, pointer
from ..context import Context
from ..edit import Edit
from ..findings import ALWAYS, ERROR, SAFE, Change, Finding, Rule

EXPLANATION = """\
A layer of a mixed-precision model (keras.mixed_precision.set_global_policy(
"mixed_float16") in tf.keras) saves its dtype as a Policy object:

    "dtype": {"module": "keras.mixed_precision", "class_name": "Policy",
              "config": {"name": "mixed_float16"}, "registered_name": null}

Keras 3's class is DTypePolicy (3.0-3.1: keras.mixed_precision; later:
keras), and newer releases no longer find `keras.mixed_precision.Policy`.
Every Keras 3 release takes the policy by name.

Fix (safe, config only): the object becomes its name, "mixed_float16"; the
layer computes in float16 and keeps float32 variables as before.
"""

RULE = Rule(
    code="KR704",
    name="keras2-dtype-policy",
    severity=ERROR,
    summary="A Keras 2 mixed-precision Policy object as dtype: Keras 3 reads the policy's name",
    explanation=EXPLANATION,
    fix=ALWAYS,
)


def detect(ctx: Context) -> list[Finding]:
    if not keras2.applies(ctx.archive):
        return []
    found = []
    for path, obj, owner in ctx.serialized_objects:
        if obj.get("class_name") != "Policy" or not path or path[-1] != "dtype":
            continue
        name = obj["config"].get("name") if isinstance(obj["config"], dict) else None
        if not isinstance(name, str):
            continue
        found.append(
            Finding(
                RULE.code,
                f"dtype of {owner[0]} '{owner[1]}' is a Keras 2 Policy object ('{name}')"
                if owner
                else f"dtype is a Keras 2 Policy object ('{name}')",
                pointer.of(path),
                ERROR,
                layer=owner[1] if owner else None,
                fix=SAFE,
            )
        )
    return found


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    return objects.write_policy_names(edit.config, findings, RULE.code, "Policy")
