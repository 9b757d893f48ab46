"""KR705: a nested Sequential referenced at node index 1 (Keras 2's numbering).

In tf.keras a Sequential built with an input has a node of its own (index 0)
before it is called, so the outer model reads its first call as
`["sequential", 1, 0]`. A Keras 3 Sequential has no such node: its first call
is node 0, and index 1 is out of range ("Layer node index out of bounds").
"""

from __future__ import annotations

from .. import keras2
from ..context import Context
from ..edit import Edit
from ..findings import ALWAYS, ERROR, SAFE, Change, Finding, Rule
from ..graph import SEQUENTIAL

EXPLANATION = """\
A Sequential built with an input (`Sequential([Input((3,)), ...])`, or a first
layer given `input_shape=`) is a graph network in tf.keras: building it
creates node 0 of the Sequential, and calling it inside a Functional model
creates node 1. The outer model's config reads that call as

    "inbound_nodes": [[["sequential", 1, 0, {}]]]

Keras 3 builds the same Sequential without a node of its own, so its first
call is node 0 and the load fails (IndexError: Layer node index out of
bounds). The Teachable Machine image export is such a model.

Fix (safe, config only): references to the calls of such a nested Sequential
count from 0, as Keras 3 numbers them. Nothing else changes.
"""

RULE = Rule(
    code="KR705",
    name="keras2-nested-sequential-node",
    severity=ERROR,
    summary="A nested Sequential read at Keras 2's node index 1: Keras 3 numbers its calls from 0",
    explanation=EXPLANATION,
    fix=ALWAYS,
)


def detect(ctx: Context) -> list[Finding]:
    if not keras2.applies(ctx.archive):
        return []
    found = []
    for model in ctx.graph.functional_models():
        built = {
            layer.name
            for layer in model.layers
            if layer.submodel is not None
            and layer.submodel.kind == SEQUENTIAL
            and _has_input_layer(layer.config)
        }
        if not built:
            continue
        for where, ref in _references(ctx.config, model.pointer):
            if ref[0] in built and isinstance(ref[1], int) and ref[1] >= 1:
                found.append(
                    Finding(
                        RULE.code,
                        f"nested Sequential '{ref[0]}' is read at node {ref[1]} (Keras 2 "
                        f"counts its own node 0); Keras 3 numbers this call {ref[1] - 1}",
                        where,
                        ERROR,
                        layer=ref[0],
                        fix=SAFE,
                    )
                )
    return found


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    changes = []
    for finding in findings:
        ref = _get(edit.config, finding.location)
        ref[1] -= 1
        changes.append(Change(RULE.code, finding.location, f"node {ref[1] + 1} -> {ref[1]}"))
    return changes


def _has_input_layer(arguments: dict) -> bool:
    """Whether tf.keras built the Sequential when it was made (node 0): it has
    an InputLayer, or its first layer was given an input shape."""
    layers = arguments.get("layers")
    if not layers or not isinstance(layers[0], dict):
        return False
    first = layers[0]
    inner = first.get("config")
    return first.get("class_name") == "InputLayer" or (
        isinstance(inner, dict) and inner.get("batch_input_shape") is not None
    )


def _references(config: dict, model_pointer: str):
    """(pointer, [layer, node, tensor, ...]) of every legacy-form reference in
    a Functional model: inbound nodes, inputs and outputs."""
    from .. import pointer

    model = pointer.get(config, model_pointer)
    inner = model.get("config") if isinstance(model, dict) else None
    if not isinstance(inner, dict):
        return
    base = f"{model_pointer}/config"
    layers = inner.get("layers")
    for i, layer in enumerate(layers if isinstance(layers, list) else []):
        nodes = layer.get("inbound_nodes") if isinstance(layer, dict) else None
        for j, node in enumerate(nodes if isinstance(nodes, list) else []):
            if isinstance(node, list):
                for k, ref in enumerate(node):
                    if _is_ref(ref):
                        yield f"{base}/layers/{i}/inbound_nodes/{j}/{k}", ref
    for key in ("input_layers", "output_layers"):
        refs = inner.get(key)
        if _is_ref(refs):
            yield f"{base}/{key}", refs
        elif isinstance(refs, list):
            for k, ref in enumerate(refs):
                if _is_ref(ref):
                    yield f"{base}/{key}/{k}", ref


def _is_ref(value) -> bool:
    return isinstance(value, list) and len(value) >= 3 and isinstance(value[0], str)


def _get(config: dict, location: str) -> list:
    from .. import pointer

    return pointer.get(config, location)
