"""KR305: a single input or output of a Functional model written as a bare
`[layer, node, tensor]` triple (Keras 3.11+), which Keras 3.0-3.3 cannot read.

Keras 3.0-3.10 write `input_layers`/`output_layers` as a list of triples, a
list of one for a single tensor; 3.11 and later write a single tensor as the
triple itself. Readers from 3.4.0 take either (a triple is a leaf); 3.0-3.3
iterate over it and fail.
"""

from __future__ import annotations

from .. import pointer
from ..context import Context
from ..edit import Edit
from ..findings import ALWAYS, ERROR, SAFE, Change, Finding, Rule
from ..graph import is_tensor_triple

EXPLANATION = """\
Keras 3.11 and later save a Functional model with one input or one output as
a bare triple, `"output_layers": ["dense", 0, 0]`, where earlier releases
wrote a list of one, `[["dense", 0, 0]]`. Keras 3.4.0 and later read both.
Keras 3.0.0 to 3.3.3 take every item of the list as a triple, call
`get_tensor(*"dense")` and fail:

    TypeError: functional_from_config.<locals>.get_tensor() takes 3
    positional arguments but 5 were given

(the count is the length of the layer's name plus one). This is the
commonest failure of a model saved by a recent Keras and loaded by an older
Keras 3: a pinned server, an older Colab or TPU image.

Fix (safe, config only, with `--keras 3.0` to `--keras 3.3`): the triple is
written as a list of one, as those releases write it themselves. Every Keras 3
release reads the list of one as the same single tensor.
"""

RULE = Rule(
    code="KR305",
    name="single-input-output",
    severity=ERROR,
    summary="A single input or output saved as a bare triple (Keras 3.11+): Keras 3.0-3.3 fail",
    explanation=EXPLANATION,
    fix=ALWAYS,
    breaks_in=("3.0", "3.3"),
)

KEYS = ("input_layers", "output_layers")


def detect(ctx: Context) -> list[Finding]:
    findings = []
    for model in ctx.graph.functional_models():
        for key in KEYS:
            location = f"{model.pointer}/config/{key}"
            try:
                value = pointer.get(ctx.config, location)
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            if not is_tensor_triple(value):
                continue
            name = value[0]
            findings.append(
                Finding(
                    code=RULE.code,
                    message=(
                        f"{key} of model '{model.name}' is the bare triple {value[:3]}, as "
                        "Keras 3.11+ write one tensor; Keras 3.0-3.3 read it as a list of "
                        "triples and fail: 'get_tensor() takes 3 positional arguments but "
                        f"{len(name) + 1} were given'"
                    ),
                    location=location,
                    layer=name,
                    fix=SAFE,
                )
            )
    return findings


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    changes = []
    for finding in findings:
        value = pointer.get(edit.config, finding.location)
        pointer.set(edit.config, finding.location, [value])
        changes.append(
            Change(
                RULE.code,
                finding.location,
                f"wrote the single tensor {value[:3]} as a list of one, as Keras 3.0-3.10 do",
            )
        )
    return changes
