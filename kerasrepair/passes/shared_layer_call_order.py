"""KR301: a shared layer called again after a later layer (keras-team/keras#20307).

Keras rebuilds a Functional model by calling its layers in config order, each
layer's calls in order, and puts off a call whose input does not exist yet.
Keras 3.0.0 to 3.6.0 only put it off for calls in the legacy list form
(`[["dense_1", 0, 0, {}]]`): for the dict form that Keras 3 writes, the same
situation raises `ValueError: Layer node index out of bounds.` and the load
fails. This pass replays the loader's order and rewrites exactly the calls that
would be met too early into the legacy form, which every Keras 3 release reads.

A call of several tensors (`MultiHeadAttention(query, value)`) has no legacy
form. With --unsafe-fixes such a call gets its own copy of the layer instead:
the copy is placed where Keras will list it in `model.layers`, the references
to the call are pointed at it, and the weight groups are copied and renumbered
to match (`edit.regroup`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .. import graph, pointer
from ..archive import WEIGHTS_H5, Archive
from ..context import Context
from ..edit import DeleteGroup, Edit, SetLayerName, regroup
from ..findings import ERROR, SAFE, SOMETIMES, UNSAFE, Change, Finding, Rule
from ..graph import Layer, ModelGraph, Node

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
`MultiHeadAttention(query, value)`, or tensors in keyword arguments) has an
unsafe fix, with --unsafe-fixes: the call gets its own copy of the layer
(`attention_call_2` for call 2 of `attention`), which starts with the same
weights, so predictions are unchanged, but the weights are no longer shared:
training updates them separately. config.json gets the copy where Keras will
list it in `model.layers`, and the references to that call point at it;
model.weights.h5 gets a copy of the layer's weight group, and the groups of
later layers of the same class are renumbered (Keras names the groups by class
and position: `multi_head_attention`, `multi_head_attention_1`, ...). The
saved optimizer state, whose slots follow the list of trainable variables that
a copy with weights lengthens, is then dropped: the model loads compiled, with
a fresh optimizer.

Without --unsafe-fixes, or where no copy can help (a nested model, a layer
called once, weights not in HDF5 form), the call is reported: load the model
with Keras 3.7.0 or newer, or build it so that each layer object is called
once.
"""


RULE = Rule(
    code="KR301",
    name="shared-layer-call-order",
    severity=ERROR,
    summary="A shared layer is called again after a later layer: Keras 3.0-3.6 cannot load it",
    explanation=EXPLANATION,
    fix=SOMETIMES,
    breaks_in=("3.0", "3.6"),
)


def detect(ctx: Context) -> list[Finding]:
    findings = []
    for _, layer, node, waits_for, behind_early, fix in _calls_met_too_early(ctx):
        if fix == SAFE:
            hint = ""
        elif fix == UNSAFE:
            hint = (
                "this call takes several tensors, which the legacy form cannot hold: "
                "--unsafe-fixes gives it its own copy of the layer (same weights, no "
                "longer shared); or load with Keras 3.7.0 or newer"
            )
        elif behind_early:
            hint = (
                "this call takes several tensors, which the legacy form cannot hold; the "
                "call it needs waits behind a call met too early itself, and repairing "
                "that one may repair this one; otherwise load with Keras 3.7.0 or newer, "
                "or call each layer object once"
            )
        else:
            hint = (
                "this call takes several tensors, which the legacy form cannot hold: "
                "load with Keras 3.7.0 or newer, or call each layer object once"
            )
        findings.append(
            Finding(
                code=RULE.code,
                message=(
                    f"call {_call_number(layer, node)} of layer '{layer.name}' needs "
                    f"'{waits_for.layer}' call {waits_for.node_index}, which Keras 3.0-3.6 "
                    "has not made yet when it gets there: load_model fails with "
                    "'Layer node index out of bounds'"
                ),
                location=node.pointer,
                layer=layer.name,
                fix=fix,
                hint=hint,
            )
        )
    return findings


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    changes = []
    safe = [finding for finding in findings if finding.fix == SAFE]
    if len(safe) < len(findings):  # unsafe ones chosen: copies first, as they rewire
        changes += _split_shared_calls(ctx.archive, edit)
        after = Context(ctx.archive, edit.config, ctx.options)
        safe = [finding for finding in detect(after) if finding.fix == SAFE]
    for finding in safe:
        node = pointer.get(edit.config, finding.location)
        pointer.set(edit.config, finding.location, _legacy_form(node))
        changes.append(
            Change(
                RULE.code,
                finding.location,
                f"rewrote call of '{finding.layer}' to the legacy list form, "
                "which Keras 3.0-3.6 defers until its input exists",
            )
        )
    return changes


def _calls_met_too_early(ctx: Context):
    """(model, layer, node, input it lacks, whether that input waits behind a
    call met too early, fix) for every call the loader of Keras 3.0-3.6 meets
    too early; fix is SAFE (the legacy form), UNSAFE (a copy of the layer) or
    None."""
    for model in ctx.graph.functional_models():
        for layer, node, waits_for, behind_early in _met_too_early(model):
            if _legacy_form(pointer.get(ctx.config, node.pointer)) is not None:
                fix = SAFE
            elif _can_split(ctx.archive, model, layer):
                fix = UNSAFE
            else:
                fix = None
            yield model, layer, node, waits_for, behind_early, fix


def _can_split(archive: Archive, model: ModelGraph, layer: Layer) -> bool:
    """Whether a call of `layer` can move to a copy of it: the layer is called
    more than once, is not a nested model (whose node numbering differs between
    releases), its weights are in a form kerasrepair edits, and Keras's order
    of `model.layers` (which names the weight groups) is predicted exactly."""
    if layer.calls < 2 or layer.submodel is not None or layer.weights_path is None:
        return False
    weights = archive.weights()
    if weights.format not in ("h5", "none") or weights.problems:
        return False
    return graph.keras_layer_order(model) == [other.name for other in model.layers]


def _split_shared_calls(archive: Archive, edit: Edit) -> list[Change]:
    """Give each call that needs it its own copy of its layer, one at a time
    (each copy changes what the loader meets when), and record the weight
    groups' copies and moves; drop the optimizer state if a copy holds
    weights."""
    changes = []
    # where each weight group of the current config was in the archive
    archive_group: dict[str, str] = {}
    copied_weights = False
    weights_in_h5 = archive.weights().format == "h5"
    moved_calls: dict[tuple, list[int]] = {}  # (model, layer) -> its calls moved, numbered as saved
    while True:
        ctx = Context(archive, edit.config)
        splittable = (
            (model, layer, node)
            for model, layer, node, *_, fix in _calls_met_too_early(ctx)
            if fix == UNSAFE
        )
        found = next(splittable, None)
        if found is None:
            break
        model, layer, node = found
        original_group = archive_group.get(layer.weights_path, layer.weights_path)
        copied_weights |= archive.weights().params_under(original_group) > 0
        moved = moved_calls.setdefault((model.name, layer.name), [])
        saved_numbers = [n for n in range(1, layer.calls + len(moved) + 1) if n not in moved]
        call_number = saved_numbers[layer.nodes.index(node)]
        moved.append(call_number)
        split = _split_off(edit.config, model, layer, node, call_number)
        groups = ", ".join(f"{target} from {source}" for target, source in split.groups.items())
        changes.append(
            Change(
                RULE.code,
                split.pointer,
                f"copied layer '{layer.name}' as '{split.name}' for its call "
                f"{call_number}, which takes several tensors (no legacy form): "
                "the copy starts with the same weights, so predictions are unchanged, but "
                "they are no longer shared, and training updates them separately"
                + (f"; weight groups: {groups}" if groups and weights_in_h5 else ""),
            )
        )
        if weights_in_h5:
            edit.weight_ops += regroup(split.groups)
            edit.weight_ops.append(SetLayerName(split.group, split.name))
            archive_group.update(
                {
                    target: archive_group.get(source, source)
                    for target, source in split.groups.items()
                }
            )
    optimizer = archive.weights().optimizer_variables
    if copied_weights and optimizer:
        edit.weight_ops.append(DeleteGroup("optimizer"))
        changes.append(
            Change(
                RULE.code,
                f"{WEIGHTS_H5}:optimizer",
                f"dropped the saved optimizer state ({len(optimizer)} variables): its "
                "slots follow the model's trainable variables, which the copies lengthen, "
                "so they no longer line up; the model loads compiled, with a fresh "
                "optimizer (Keras warns that it skips the optimizer's variables)",
            )
        )
    return changes


@dataclass
class _Split:
    name: str  # the copy's
    pointer: str  # the copy's place in config.json
    group: str  # the copy's weight group
    groups: dict[str, str]  # weight group -> the group its content comes from, where they differ


def _split_off(
    config: dict, model: ModelGraph, layer: Layer, node: Node, call_number: int
) -> _Split:
    """Move one call of `layer` (call `call_number` as the archive numbers
    them) to a new copy of it, in `config`.

    The copy's node index for the call is the layer's first; the layer's later
    calls move down by one; the references to them are rewritten. The model's
    layers are then put in Keras's order, and each layer's weight group is
    where Keras will look for it.
    """
    call = layer.nodes.index(node)
    node_index = layer.nodes_before_calls + call
    taken = {other.name for other in graph.build(config).walk()}
    name = _unused_name(f"{layer.name}_call_{call_number}", taken)

    layer_config = pointer.get(config, layer.pointer)
    moved = layer_config["inbound_nodes"].pop(call)
    copy = json.loads(json.dumps(layer_config))  # a deep copy of plain JSON
    copy["name"] = name
    if isinstance(copy.get("config"), dict) and "name" in copy["config"]:
        copy["config"]["name"] = name
    copy["inbound_nodes"] = [moved]

    model_config = pointer.get(config, model.pointer)["config"]
    layers = model_config["layers"]
    layers.append(copy)
    references = [node for serialized in layers for node in serialized.get("inbound_nodes") or []]
    references += [model_config.get("input_layers"), model_config.get("output_layers")]
    for reference in references:
        for history in graph.tensor_histories(reference):
            if history[0] != layer.name:
                continue
            if history[1] == node_index:
                history[0], history[1] = name, layer.nodes_before_calls
            elif history[1] > node_index:
                history[1] -= 1

    order = graph.keras_layer_order(_model_at(config, model.pointer))
    position = {layer_name: index for index, layer_name in enumerate(order)}
    layers.sort(key=lambda serialized: position[_layer_name(serialized)])

    before = {other.name: other.weights_path for other in model.layers}
    before[name] = layer.weights_path
    after = {other.name: other.weights_path for other in _model_at(config, model.pointer).layers}
    return _Split(
        name=name,
        pointer=f"{model.pointer}/config/layers/{order.index(name)}",
        group=after[name],
        groups={
            group: before[layer_name]
            for layer_name, group in after.items()
            if group is not None and group != before[layer_name]
        },
    )


def _model_at(config: dict, pointer: str) -> ModelGraph:
    return next(
        model for model in graph.build(config).functional_models() if model.pointer == pointer
    )


def _layer_name(serialized: dict) -> str:
    """A layer's name as `graph` reads it."""
    return str(serialized.get("name", (serialized.get("config") or {}).get("name")))


def _unused_name(name: str, taken: set[str]) -> str:
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name}_{number}"
    return candidate


def _met_too_early(model: ModelGraph):
    """Replay `functional_from_config` of Keras 3.0-3.6; yield every dict-form
    call it meets before its inputs exist, with the input it lacks and whether
    that input waits behind a call met too early itself."""
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
                    blocked = waiting.get(missing.layer)
                    behind_early = bool(blocked) and blocked[0].pointer in rewritten
                    yield by_name[name], node, missing, behind_early
                    rewritten.add(node.pointer)  # as the repair leaves it: now it waits
                break
            if not queue:
                del waiting[name]
        if not progress:
            return  # a cycle: Keras itself would never finish


def _call_number(layer: Layer, node: Node) -> int:
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
