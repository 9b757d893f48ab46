"""KR601: a numpy array saved as a layer argument (keras-team/keras#20072).

`Rescaling(np.array([...]))` saves its `scale` as
`{"class_name": "__numpy__", "config": {"value": [...], "dtype": "float64"}}`.
Keras 3.0.0 to 3.4.1 hand that dict to the layer unchanged: the model loads,
then its first call fails (`float() argument must be ... not 'TrackedDict'`).
The repair writes the plain list instead, which every release reads.
"""

from __future__ import annotations

from .. import pointer
from ..context import Context
from ..edit import Edit
from ..findings import ERROR, SAFE, SOMETIMES, UNSAFE, Change, Finding, Rule
from ..graph import is_builtin

EXPLANATION = """\
A layer built with a numpy array as an argument, e.g.

    keras.layers.Rescaling(scale=np.array([1 / 255, 1 / 127.5, 1.0]))

is saved with the array as a special object:

    "scale": {"class_name": "__numpy__",
              "config": {"value": [0.0039, 0.0078, 1.0], "dtype": "float64"}}

Keras 3.5 and newer turn it back into an array. Keras 3.0.0 to 3.4.1 pass the
dict itself to the layer: the model loads, then the first call fails with

    TypeError: float() argument must be a string or a real number, not 'TrackedDict'

(keras-team/keras#20072, tensorflow/tensorflow#69719).

Fix (safe for built-in layers, config only): replace the object with its
plain list of values. Built-in layers convert lists and arrays alike, so
predictions are identical in every release. For a custom layer the fix is
marked unsafe (its code may rely on an ndarray) and runs only with
--unsafe-fixes. Numpy values nested inside other objects (e.g. a `Constant`
initializer's `value`) are deserialized correctly by Keras and left alone.
"""


RULE = Rule(
    code="KR601",
    name="numpy-layer-argument",
    severity=ERROR,
    summary="A layer argument is a serialized numpy array: Keras 3.0-3.4 fail at the first call",
    explanation=EXPLANATION,
    fix=SOMETIMES,
    breaks_in=("3.0", "3.4"),
)


def detect(ctx: Context) -> list[Finding]:
    findings = []
    for layer in ctx.graph.walk():
        for argument, value in layer.config.items():
            if not _is_numpy(value):
                continue
            built_in = is_builtin(layer.module)
            findings.append(
                Finding(
                    code=RULE.code,
                    message=(
                        f"{layer.class_name} '{layer.name}' argument '{argument}' is a "
                        f"serialized numpy array ({value['config'].get('dtype')}): Keras "
                        "3.0-3.4 pass it on as a dict and the first call fails"
                    ),
                    location=layer.pointer + pointer.of(("config", argument)),
                    layer=layer.name,
                    fix=SAFE if built_in else UNSAFE,
                    hint="" if built_in else "pass a list instead of a numpy array in your code",
                )
            )
    return findings


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    changes = []
    for finding in findings:
        value = pointer.get(edit.config, finding.location)["config"]["value"]
        pointer.set(edit.config, finding.location, value)
        changes.append(
            Change(RULE.code, finding.location, f"replaced the numpy object with the list {value}")
        )
    return changes


def _is_numpy(value) -> bool:
    return (
        isinstance(value, dict)
        and value.get("class_name") == "__numpy__"
        and isinstance(value.get("config"), dict)
        and "value" in value["config"]
    )
