"""KR302: call references that lost their node index (archives of Keras 3.2.x).

In a Functional config every call (node) of a layer feeds a later call or is a
model output: `get_config` keeps only such nodes. Keras 3.2.0/3.2.1 wrote the
node index of every reference inside `inbound_nodes` as 0, so a layer that
should read the second call of a shared layer reads the first one: the model
loads in every release and silently computes something else. The sign of it is
a call that nothing reads.

Repair (safe, config only, for archives saved by 3.2.x): among the references
written as 0 to such a layer, find the one way to point them at its calls so
that every call is read again and no call depends on itself or on a later
call of the same layer. When exactly one such wiring exists, write it;
otherwise report the finding without a fix.
"""

from __future__ import annotations

import itertools

from .. import graph, pointer
from ..context import Context
from ..edit import Edit
from ..findings import ERROR, SAFE, SOMETIMES, Change, Finding, Rule
from ..graph import Layer, ModelGraph

EXPLANATION = """\
When a layer object is called several times, each call is a node, and the
layers that read its outputs say which: `"keras_history": ["shared", 1, 0]`
reads the output of the second call of `shared`.

Keras 3.2.0 and 3.2.1 wrote that node index as 0 in every reference inside
`inbound_nodes` (the model outputs kept theirs). Where a layer read a later
call of a shared layer, the archive now says it reads the first call: the
model loads in every Keras release and predicts something else, with no
error. The sign of it in the archive is a call whose output nothing reads,
which a Functional config never holds otherwise.

Fix (safe, config only, for archives saved by Keras 3.2.x): kerasrepair looks
for the wirings of the references written as 0 under which every call is read
again, no call depends on itself, and no call depends on a later call of the
same layer. If exactly one exists, it writes it; the repaired archive predicts
what the original model did. If none or several exist, the finding stays,
and the model must be re-saved from its code with Keras 3.3 or newer.
"""


RULE = Rule(
    code="KR302",
    name="lost-node-indices",
    severity=ERROR,
    summary="A layer call that nothing reads: its references lost their node index (Keras 3.2.x)",
    explanation=EXPLANATION,
    fix=SOMETIMES,
    breaks_in=None,
)

_MAX_WIRINGS = 4096


def detect(ctx: Context) -> list[Finding]:
    saved_by_3_2 = (ctx.archive.keras_version or "").startswith("3.2.")
    findings = []
    for model in ctx.graph.functional_models():
        for layer, unread in _unread_calls(model):
            wiring = _unique_wiring(model, layer) if saved_by_3_2 else None
            calls = ", ".join(str(index) for index in sorted(unread))
            findings.append(
                Finding(
                    code=RULE.code,
                    message=(
                        f"call {calls} of layer '{layer.name}' is read by no layer and is no "
                        "model output: the references to it lost their node index"
                        + (" (Keras 3.2.x wrote them as 0)" if saved_by_3_2 else "")
                        + ", so the model computes something else than it was built to"
                    ),
                    location=layer.pointer,
                    layer=layer.name,
                    fix=SAFE if wiring else None,
                    hint=""
                    if wiring
                    else "re-save the model from its code with Keras 3.3 or newer",
                )
            )
    return findings


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    changes = []
    for finding in findings:
        model, layer = _find_layer(ctx.graph, finding.location)
        for (node_pointer, position), index in _unique_wiring(model, layer).items():
            if index == 0:
                continue
            node = pointer.get(edit.config, node_pointer)
            graph.tensor_histories(node)[position][1] = index
            changes.append(
                Change(
                    RULE.code,
                    node_pointer,
                    f"this call reads call {index} of '{layer.name}' again (was 0)",
                )
            )
    return changes


def _find_layer(model: ModelGraph, pointer: str) -> tuple[ModelGraph, Layer]:
    for candidate in model.functional_models():
        for layer in candidate.layers:
            if layer.pointer == pointer:
                return candidate, layer
    raise KeyError(pointer)


def _calls(layer: Layer) -> range:
    start = layer.nodes_before_calls
    return range(start, start + layer.calls)


def _read_calls(model: ModelGraph, name: str, refs: dict | None = None) -> set[int]:
    read = {ref.node_index for ref in model.outputs if ref.layer == name}
    for consumer in model.layers:
        for node in consumer.nodes:
            for position, ref in enumerate(node.inputs):
                index = (refs or {}).get((node.pointer, position), ref.node_index)
                if ref.layer == name:
                    read.add(index)
    return read


def _unread_calls(model: ModelGraph):
    """Shared plain layers with a call nothing reads. (Nested models are left
    out: Keras 3.0-3.2 numbered their calls from 0, later releases from 1.)"""
    for layer in model.layers:
        if layer.calls > 1 and layer.submodel is None:
            unread = set(_calls(layer)) - _read_calls(model, layer.name)
            if unread:
                yield layer, unread


def _unique_wiring(model: ModelGraph, layer: Layer) -> dict[tuple[str, int], int] | None:
    """The one assignment of call indices to the references written as 0."""
    zeros = [
        (node.pointer, position)
        for consumer in model.layers
        for node in consumer.nodes
        for position, ref in enumerate(node.inputs)
        if ref.layer == layer.name and ref.node_index == 0
    ]
    choices = list(_calls(layer))
    if not zeros or len(choices) ** len(zeros) > _MAX_WIRINGS:
        return None
    found = None
    for assignment in itertools.product(choices, repeat=len(zeros)):
        wiring = dict(zip(zeros, assignment, strict=True))
        if set(choices) <= _read_calls(model, layer.name, wiring) and _acyclic(model, wiring):
            if found is not None:
                return None  # several wirings fit: the archive cannot tell
            found = wiring
    return found


def _acyclic(model: ModelGraph, wiring: dict[tuple[str, int], int]) -> bool:
    """No call depends on itself, or on a later call of the same layer."""
    depends: dict[tuple[str, int], set[tuple[str, int]]] = {}
    for layer in model.layers:
        for offset, node in enumerate(layer.nodes):
            call = (layer.name, layer.nodes_before_calls + offset)
            inputs = {
                (ref.layer, wiring.get((node.pointer, position), ref.node_index))
                for position, ref in enumerate(node.inputs)
            }
            if offset:  # calls of one layer happened in order
                inputs.add((layer.name, call[1] - 1))
            depends[call] = inputs
    state: dict[tuple[str, int], int] = {}  # 1 visiting, 2 done

    def visit(call: tuple[str, int]) -> bool:
        if state.get(call) == 2:
            return True
        if state.get(call) == 1:
            return False
        state[call] = 1
        if not all(visit(required) for required in depends.get(call, ())):
            return False
        state[call] = 2
        return True

    return all(visit(call) for call in depends)
