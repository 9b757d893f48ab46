"""KR211: MultiHeadAttention weights where Keras 3.0.0 does not look for them.

Keras saves a layer's sub-layers under the names of its attributes. Keras
3.0.5 and later give MultiHeadAttention public properties (`query_dense`,
`key_dense`, `value_dense`, `output_dense`) and store its projections under
those names; 3.0.0 has only the private attributes (`_query_dense`, ...) and
reads the groups of those names.
"""

from __future__ import annotations

from ..context import Context
from ..edit import Edit, MoveGroup
from ..findings import ALWAYS, ERROR, SAFE, Change, Finding, Rule

EXPLANATION = """\
Keras stores the weights of a layer's sub-layers in model.weights.h5 under
the names of the layer's attributes. From 3.0.5, MultiHeadAttention has the
properties `query_dense`, `key_dense`, `value_dense` and `output_dense`, and
its projections are stored under `layers/multi_head_attention/query_dense`
and so on. Keras 3.0.0 has only the private attributes `_query_dense`, ...,
looks for `layers/multi_head_attention/_query_dense`, and fails:

    ValueError: Layer 'key' expected 1 variables, but received 0 variables
    during loading. Expected: ['kernel']

Fix (safe, with `--keras 3.0.0`): the four groups are renamed to the names
3.0.0 reads; the values are untouched. No other release is affected.
"""

RULE = Rule(
    code="KR211",
    name="attention-sublayer-groups",
    severity=ERROR,
    summary="MultiHeadAttention weights under the names Keras 3.0.5+ write: 3.0.0 cannot find them",
    explanation=EXPLANATION,
    fix=ALWAYS,
    breaks_in=("3.0", "3.0"),  # 3.0.0 only: its own schema
)

SUBLAYERS = ("query_dense", "key_dense", "value_dense", "output_dense")


def detect(ctx: Context) -> list[Finding]:
    if ctx.target.name != "3.0.0":
        return []
    weights = ctx.weights()
    if weights.format != "h5":
        return []
    found = []
    for layer in ctx.graph.walk():
        if layer.class_name != "MultiHeadAttention" or not layer.weights_path:
            continue
        moves = [
            sub
            for sub in SUBLAYERS
            if weights.params_under(f"{layer.weights_path}/{sub}")
            and not weights.params_under(f"{layer.weights_path}/_{sub}")
        ]
        if not moves:
            continue
        found.append(
            Finding(
                RULE.code,
                f"MultiHeadAttention '{layer.name}' stores its projections under "
                f"'{layer.weights_path}/{moves[0]}' and the like, where Keras 3.0.0 does not "
                f"look ('_{moves[0]}'): load_model fails with 'expected 1 variables, but "
                "received 0 variables during loading'",
                layer.pointer,
                ERROR,
                layer=layer.name,
                fix=SAFE,
            )
        )
    return found


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    changes = []
    weights = ctx.weights()
    layers = {layer.pointer: layer for layer in ctx.graph.walk()}
    for finding in findings:
        path = layers[finding.location].weights_path
        for sub in SUBLAYERS:
            if weights.params_under(f"{path}/{sub}"):
                operation = MoveGroup(f"{path}/{sub}", f"{path}/_{sub}")
                edit.weight_ops.append(operation)
                changes.append(
                    Change(RULE.code, f"model.weights.h5:{path}/{sub}", operation.describe())
                )
    return changes
