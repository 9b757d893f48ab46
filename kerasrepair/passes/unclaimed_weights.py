"""KR402: weights stored under a group that no layer of config.json claims."""

from __future__ import annotations

from ..context import Context
from ..findings import NEVER, WARNING, Finding, Rule
from ..graph import SUBCLASSED

RULE = Rule(
    code="KR402",
    name="unclaimed-weights",
    severity=WARNING,
    summary="Weights that belong to no layer of config.json: the loader does not restore them",
    explanation="""\
Keras stores a layer's variables under a group named after the layer's class
and its place in `model.layers` (`layers/dense_1/vars`). A group that no
layer of config.json maps to is never read: its values are silently left
behind when the model loads. It happens when config.json was edited by hand
(a layer removed or renamed), or the weights file comes from another model.
`kerasrepair inspect --weights` lists the groups; restore the config.json or
the weights file that belong together. (A subclassed model's weight paths
follow its attribute names, which config.json does not say: not checked.)""",
    fix=NEVER,
    checked=False,  # inspect shows it; it does not stop a load
)


def detect(ctx: Context) -> list[Finding]:
    model = ctx.graph
    if model.kind == SUBCLASSED:
        return []
    weights = ctx.weights()
    if weights.format == "legacy-h5":
        return []  # Keras 2's layout: KR708 re-lays it
    unclaimed = weights.unclaimed_groups(
        {layer.weights_path for layer in model.walk() if layer.weights_path}
    )
    return [
        Finding(
            code=RULE.code,
            message=f"weights at '{group}' ({weights.params_under(group)} values) belong to "
            "no layer of config.json: the loader will not restore them",
            location=f"{weights.entry}:{group}",
            severity=WARNING,
            hint="use the config.json and weights that were saved together",
        )
        for group in unclaimed
    ]
