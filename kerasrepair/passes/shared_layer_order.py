"""KR301: a shared layer called again after a later layer (keras-team/keras#20307).

Keras rebuilds a Functional model by calling its layers in config order, each
layer's calls in order, and puts off a call whose input does not exist yet.
Keras 3.0.0 to 3.6.0 only put it off for calls in the legacy list form
(`[["dense_1", 0, 0, {}]]`): for the dict form that Keras 3 writes, the same
situation raises `ValueError: Layer node index out of bounds.` and the load
fails. This pass replays the loader's order and rewrites exactly the calls that
would be met too early into the legacy form, which every Keras 3 release reads.
"""

from __future__ import annotations

from typing import Any

from .. import graph
from ..context import Context, Edit
from ..findings import SAFE, Change, Finding
from ..graph import CallNode, LayerInfo, ModelGraph

CODE = "KR301"
NAME = "shared-layer-call-order"
SUMMARY = "A shared layer is called again after a later layer: Keras 3.0-3.6 cannot load it"
FIX = SAFE
EXPLANATION = """\
A layer object called more than once, with another layer between the calls
(`t(x)`, `Dense(...)`, `t(...)`), is saved as one layer with several inbound
nodes. To load it, Keras creates every layer, then calls them in config order;
a call whose input tensor does not exist yet must wait for the next round.

Keras 3.0.0 to 3.6.0 wait only for calls written in the legacy list form
(`[["dense_1", 0, 0, {}]]`). Calls in the dict form that Keras 3 writes
(`{"args": [{"class_name": "__keras_tensor__", ...}], "kwargs": {}}`) raise
instead:

    ValueError: Layer node index out of bounds.

(keras-team/keras#20307; fixed in 3.7.0). The same happens with a shared
`Add()` or a shared sub-model called twice.

Fix (safe, config only): kerasrepair replays the loader's order and rewrites
the calls that would be met too early, and those that then depend on them,
into the legacy list form. The layer stays shared, the weights are untouched,
and the archive loads with the same predictions in every Keras 3 release.

A call the legacy form cannot express (several tensor arguments, as in
`MultiHeadAttention(query, value)`, or tensors in keyword arguments) is
reported but not rewritten: load the model with Keras 3.7.0 or newer, or
build it so that each layer object is called once.
"""


def detect(ctx: Context) -> list[Finding]:
    findings = []
    for model in ctx.graph.functional_models():
        for layer, node, waits_for in _met_too_early(model):
            convertible = _legacy_form(graph.resolve(ctx.config, node.pointer)) is not None
            findings.append(
                Finding(
                    code=CODE,
                    message=(
                        f"call {_call_number(layer, node)} of layer '{layer.name}' needs "
                        f"'{waits_for.layer}' call {waits_for.node_index}, which Keras 3.0-3.6 "
                        "has not made yet when it gets there: load_model fails with "
                        "'Layer node index out of bounds'"
                    ),
                    location=node.pointer,
                    layer=layer.name,
                    fix=SAFE if convertible else None,
                    hint=""
                    if convertible
                    else "this call takes several tensors, which the legacy form cannot "
                    "hold: load with Keras 3.7.0 or newer, or call each layer object once",
                )
            )
    return findings


def apply(ctx: Context, edit: Edit) -> list[Change]:
    changes = []
    for finding in detect(ctx):
        if finding.fix != SAFE:
            continue
        node = graph.resolve(edit.config, finding.location)
        graph.replace(edit.config, finding.location, _legacy_form(node))
        changes.append(
            Change(
                CODE,
                finding.location,
                f"rewrote call of '{finding.layer}' to the legacy list form, "
                "which Keras 3.0-3.6 defers until its input exists",
            )
        )
    edit.changes.extend(changes)
    return changes


def _met_too_early(model: ModelGraph):
    """Replay `functional_from_config` of Keras 3.0-3.6; yield every dict-form
    call it meets before its inputs exist, with the input it lacks."""
    made = {layer.name: layer.nodes_before_calls for layer in model.layers}
    waiting = {layer.name: list(layer.nodes) for layer in model.layers if layer.nodes}
    by_name = {layer.name: layer for layer in model.layers}
    rewritten: set[str] = set()
    while waiting:
        progress = False
        for name in list(waiting):
            queue = waiting[name]
            while queue:
                node = queue[0]
                missing = next(
                    (ref for ref in node.inputs if made.get(ref.layer, 0) <= ref.node_index),
                    None,
                )
                if missing is None:
                    made[name] += 1
                    queue.pop(0)
                    progress = True
                    continue
                if node.form == "dict" and node.pointer not in rewritten:
                    yield by_name[name], node, missing
                    rewritten.add(node.pointer)  # as the repair leaves it: now it waits
                break
            if not queue:
                del waiting[name]
        if not progress:
            return  # a cycle: Keras itself would never finish


def _call_number(layer: LayerInfo, node: CallNode) -> int:
    return layer.nodes.index(node) + 1


def _legacy_form(node: Any) -> list | None:
    """`[[layer, node_index, tensor_index, kwargs], ...]` for a dict-form call,
    or None when the legacy form cannot express it."""
    if not isinstance(node, dict):
        return None
    args, kwargs = node.get("args"), node.get("kwargs") or {}
    if not isinstance(args, list) or len(args) != 1 or not isinstance(kwargs, dict):
        return None
    if graph.keras_tensor_refs(kwargs) or any(isinstance(v, (dict, list)) for v in kwargs.values()):
        return None
    argument = args[0]
    if _is_keras_tensor(argument):
        tensors = [argument]
    elif isinstance(argument, list) and len(argument) > 1 and all(map(_is_keras_tensor, argument)):
        tensors = argument
    else:
        return None
    history = [tensor["config"]["keras_history"] for tensor in tensors]
    return [[name, node_index, tensor_index, kwargs] for name, node_index, tensor_index in history]


def _is_keras_tensor(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.get("class_name") == "__keras_tensor__"
        and graph.keras_tensor_refs(value) != []
    )
