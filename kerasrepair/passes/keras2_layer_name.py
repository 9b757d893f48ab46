"""KR709: a layer name with '/', which tf.keras allowed and Keras 3 refuses.

keras.applications.DenseNet121 of tf.keras names its layers "conv1/conv",
"conv2_block1_0_bn"...; Keras 3 fails at once:

    ValueError: Argument `name` must be a string and cannot contain
    character `/`. Received: name=conv1/conv
"""

from __future__ import annotations

from typing import Any

from .. import keras2, pointer
from ..context import Context
from ..edit import Edit
from ..findings import ALWAYS, ERROR, SAFE, Change, Finding, Rule

EXPLANATION = """\
TensorFlow uses '/' to scope names, and tf.keras let a layer be called
"conv1/conv" (keras.applications.DenseNet121 does). Keras 3 refuses such a
name when it builds the layer:

    ValueError: Argument `name` must be a string and cannot contain
    character `/`. Received: name=conv1/conv

Fix (safe, config only): the layer is renamed with '_' for '/' ("conv1_conv",
with a number added if that name is taken), and every reference to it in its
model (the calls that read it, the model's inputs and outputs) follows.
Keras 3 stores weights by class and position, not by layer name, so the
weights are untouched. Code that looks the layer up by name
(model.get_layer("conv1/conv")) must use the new name.
"""

RULE = Rule(
    code="KR709",
    name="keras2-layer-name",
    severity=ERROR,
    summary="A layer name with '/', which Keras 3 refuses",
    explanation=EXPLANATION,
    fix=ALWAYS,
)


def detect(ctx: Context) -> list[Finding]:
    if not keras2.applies(ctx.archive):
        return []
    return [
        Finding(
            RULE.code,
            f"{layer.class_name} '{layer.name}': Keras 3 refuses '/' in a layer name",
            layer.pointer,
            ERROR,
            layer=layer.name,
            fix=SAFE,
        )
        for layer in ctx.graph.walk()
        if "/" in layer.name
    ]


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    taken = {layer.name for layer in ctx.graph.walk()}
    changes = []
    for finding in findings:
        layer = pointer.get(edit.config, finding.location)
        inner = layer.get("config")
        old = layer.get("name", inner.get("name") if isinstance(inner, dict) else None)
        if not isinstance(old, str):
            continue  # a name that is no text: the structure check reports it
        new = _free(old.replace("/", "_"), taken)
        taken.add(new)
        if isinstance(inner, dict):
            inner["name"] = new
        if "name" in layer:
            layer["name"] = new
        model = pointer.get(edit.config, finding.location.rpartition("/layers/")[0])
        _rename_references(model, old, new)
        changes.append(Change(RULE.code, finding.location, f"renamed '{old}' to '{new}'"))
    return changes


def _free(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    n = 1
    while f"{name}_{n}" in taken:
        n += 1
    return f"{name}_{n}"


def _rename_references(model_config: dict, old: str, new: str) -> None:
    """Every reference to layer `old` in one model's config (its layers' calls,
    its inputs and outputs), not inside nested models' own configs."""
    for layer in model_config.get("layers", []):
        if isinstance(layer, dict):
            _rename_in(layer.get("inbound_nodes"), old, new)
    for key in ("input_layers", "output_layers"):
        _rename_in(model_config.get(key), old, new)


def _rename_in(value: Any, old: str, new: str) -> None:
    if isinstance(value, list):
        if len(value) >= 3 and value[0] == old and isinstance(value[1], int):
            value[0] = new  # a legacy reference [layer, node, tensor, ...]
        for item in value:
            _rename_in(item, old, new)
    elif isinstance(value, dict):
        history = value.get("keras_history")
        if isinstance(history, list) and history and history[0] == old:
            history[0] = new
        for item in value.values():
            _rename_in(item, old, new)
