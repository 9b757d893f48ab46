"""KR209: a dtype policy object (Keras 3.4+) for a release that has no class
of that name (Keras 3.0.0 cannot find `keras.DTypePolicy`).

Keras 3.0-3.3 write a layer's dtype as the policy's name, "float32"; 3.4 and
later as an object, `{"module": "keras", "class_name": "DTypePolicy", ...}`.
Every Keras 3 release takes the name. Whether the target finds the class is
read from its schema.
"""

from __future__ import annotations

from .. import objects, pointer
from ..context import Context
from ..edit import Edit
from ..findings import ERROR, SAFE, SOMETIMES, Change, Finding, Rule

EXPLANATION = """\
Since Keras 3.4 a layer's dtype is saved as a policy object:

    "dtype": {"module": "keras", "class_name": "DTypePolicy",
              "config": {"name": "float32"}, "registered_name": null}

Keras 3.0.0 does not export `keras.DTypePolicy` and fails:

    TypeError: Could not locate class 'DTypePolicy'. Make sure custom
    classes are decorated with `@keras.saving.register_keras_serializable()`.

(3.0.5 to 3.3 find it.) Every Keras 3 release takes the policy by name.

Fix (safe, config only, for a release without the class, `--keras 3.0.0`):
the object becomes its name, "float32" or "mixed_float16"; the layer computes
and stores its variables as before. A quantized policy (`int8_from_float32`,
`QuantizedDTypePolicy`, Keras 3.4+) has no equivalent in releases before 3.4:
it is reported, with the release that has it.
"""

RULE = Rule(
    code="KR209",
    name="dtype-policy-object",
    severity=ERROR,
    summary="A dtype policy object (Keras 3.4+) that the target release cannot find",
    explanation=EXPLANATION,
    fix=SOMETIMES,
)

POLICIES = ("DTypePolicy", "FloatDTypePolicy")


def detect(ctx: Context) -> list[Finding]:
    found = []
    for path, obj, owner in ctx.serialized_objects:
        class_name = obj.get("class_name")
        if not path or path[-1] != "dtype" or not str(class_name).endswith("DTypePolicy"):
            continue
        if ctx.target.resolve(obj.get("module"), class_name) is not None:
            continue  # the target finds the class
        config = obj.get("config") if isinstance(obj.get("config"), dict) else {}
        name = config.get("name")
        where = f"dtype of {owner[0]} '{owner[1]}'" if owner else "dtype"
        if class_name in POLICIES and isinstance(name, str) and "_from_" not in name:
            fix, hint = SAFE, ""
        else:
            fix, hint = (
                None,
                f"a quantized policy ('{name}') needs Keras 3.4 or newer: load it there, "
                "or save the model before quantizing it",
            )
        found.append(
            Finding(
                RULE.code,
                f"{where} is a {class_name} object ('{name}'), a class Keras "
                f'{ctx.target.keras_version} cannot find: load_model fails with "Could not '
                f"locate class '{class_name}'\"",
                pointer.of(path),
                ERROR,
                layer=owner[1] if owner else None,
                fix=fix,
                hint=hint,
            )
        )
    return found


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    return objects.write_policy_names(edit.config, findings, RULE.code, "DTypePolicy")
