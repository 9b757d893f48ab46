"""KR706: a Lambda's function in tf.keras's layout, which Keras 3 cannot read.

tf.keras saves `"function": [code, defaults, closure]` with
`"function_type": "lambda"`; Keras 3 reads `{"class_name": "__lambda__",
"config": {"code": ..., "defaults": ..., "closure": ...}}`.
"""

from __future__ import annotations

from .. import keras2
from ..context import Context
from ..edit import Edit
from ..findings import ERROR, SAFE, SOMETIMES, Change, Finding, Rule

EXPLANATION = """\
tf.keras 2.x serializes a Lambda's Python function as a list and says its kind
beside it:

    "function": ["4wEAAAAA...", null, null], "function_type": "lambda",
    "module": "__main__", "output_shape_type": "raw", "output_shape_module": null

Keras 3 reads the same three parts (the marshalled code, the default
arguments, the closure) from one object:

    "function": {"class_name": "__lambda__",
                 "config": {"code": "4wEAAAAA...", "defaults": null, "closure": null}}

and fails on the list. The code itself is unchanged: it is bytecode of the
Python that saved the model, so it loads only under that Python minor version
(KR501/KR502 say more), and only with safe_mode=False, as any Lambda.

Fix (safe, config only): rewrite the function (and a lambda `output_shape`) in
Keras 3's layout and drop the keys Keras 3 does not know. A Lambda that wraps a
named function (`function_type: "function"`) is reported instead: Keras 3 finds
it by name only if your code registers it (keras.saving.register_keras_serializable).
"""

RULE = Rule(
    code="KR706",
    name="keras2-lambda",
    severity=ERROR,
    summary="A Lambda's function in tf.keras's layout: Keras 3 reads a __lambda__ object",
    explanation=EXPLANATION,
    fix=SOMETIMES,
)

_DROPPED = ("function_type", "module", "output_shape_type", "output_shape_module")


def detect(ctx: Context) -> list[Finding]:
    if not keras2.applies(ctx.archive):
        return []
    found = []
    for layer in ctx.graph.walk():
        if layer.class_name != "Lambda" or "function_type" not in layer.config:
            continue
        lambda_code = layer.config.get("function_type") == "lambda" and _is_dump(
            layer.config.get("function")
        )
        found.append(
            Finding(
                RULE.code,
                f"Lambda '{layer.name}' holds its function in tf.keras's layout "
                f"(function_type '{layer.config.get('function_type')}')",
                f"{layer.pointer}/config/function",
                ERROR,
                layer=layer.name,
                fix=SAFE if lambda_code else None,
                hint=""
                if lambda_code
                else "register the function with keras.saving.register_keras_serializable "
                "and re-save the model, or rewrite the Lambda as a layer class",
            )
        )
    return found


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    from .. import pointer

    changes = []
    for finding in findings:
        arguments = pointer.get(edit.config, finding.location.removesuffix("/function"))
        arguments["function"] = _lambda_object(arguments["function"])
        if arguments.get("output_shape_type") == "lambda" and _is_dump(
            arguments.get("output_shape")
        ):
            arguments["output_shape"] = _lambda_object(arguments["output_shape"])
        for key in _DROPPED:
            arguments.pop(key, None)
        changes.append(
            Change(RULE.code, finding.location, "rewritten as a Keras 3 __lambda__ object")
        )
    return changes


def _is_dump(value) -> bool:
    return isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)


def _lambda_object(dump: list) -> dict:
    code, defaults, closure = dump
    return {
        "class_name": "__lambda__",
        "config": {"code": code, "defaults": defaults, "closure": closure},
    }
