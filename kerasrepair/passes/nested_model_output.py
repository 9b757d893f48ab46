"""KR304: an output of a Functional model that is the call of a nested
Functional model: Keras 3.0-3.2 read its node index one too high.

Every Keras 3 release writes the node index of a nested Functional model in
`output_layers` one higher than the call it means (`get_config` counts a node
"linking its input to output" that Keras 3 models do not have); from 3.3.0 the
loader subtracts it again, 3.0-3.2 do not. Calls elsewhere in the graph
(`keras_history` of the inbound nodes) are numbered from 0 in every release.
"""

from __future__ import annotations

from typing import Any

from .. import pointer
from ..context import Context
from ..edit import Edit
from ..findings import ERROR, SAFE, SOMETIMES, UNSAFE, Change, Finding, Rule
from ..graph import FUNCTIONAL, ModelGraph, is_tensor_triple

EXPLANATION = """\
A model whose output is the call of a nested Functional model, such as an
autoencoder `keras.Model(x, decoder(encoder(x)))`, is saved with that output
in `output_layers` as `["decoder", 1, 0]`: every Keras 3 release counts one
node more for a nested Functional model than it has. From 3.3.0 the loader
subtracts it again; Keras 3.0.0 to 3.2.1 read node 1 as is, so they cannot
load such a model, even one they saved themselves:

    IndexError: list index out of range      (functional.py, get_tensor)

and where the nested model is called more than once, they take the output of
the call after the one saved, or fail on the last one.

Fix (safe, config only) when the nested model is called once: kerasrepair
writes node index 0, which Keras 3.0-3.2 read as the call and 3.3 and newer
read as the last call (index -1), the same call: the archive then loads with
the same predictions in every Keras 3 release.

A nested model called several times has no index that every release reads
as the same call. The fix (safe) gives that output a layer of its own: an
Identity layer on the call, as if the model had been built with
`keras.layers.Identity(name="decoder_output")(decoder(h))`. Identity has no
weights and returns its input, so predictions are unchanged in every Keras 3
release; what changes is the output's name (`model.output_names`). Where
compile_config names that output (a loss or metric per output name), the fix
is unsafe (--unsafe-fixes), as the name it gives must then be changed there
too in your code; or load the model with Keras 3.3.0 or newer.
"""

RULE = Rule(
    code="KR304",
    name="nested-model-output",
    severity=ERROR,
    summary="An output is the call of a nested Functional model: Keras 3.0-3.2 read it wrong",
    explanation=EXPLANATION,
    fix=SOMETIMES,
    breaks_in=("3.0", "3.2"),
)


def detect(ctx: Context) -> list[Finding]:
    findings = []
    for model in ctx.graph.functional_models():
        by_name = {layer.name: layer for layer in model.layers}
        for location, history in _outputs(ctx.config, model):
            layer = by_name.get(history[0])
            if layer is None or layer.submodel is None or layer.submodel.kind != FUNCTIONAL:
                continue
            node_index, calls = history[1], layer.calls
            if calls == 1 and node_index == 0:
                continue  # written by this rule: call 0 in 3.0-3.2, the last call after
            call = node_index - 1  # the call every release from 3.3 reads
            if calls == 1:
                fix, hint = SAFE, ""
            elif _named_in_compile_config(ctx.config, model, layer.name):
                fix = UNSAFE
                hint = (
                    f"the output gets a layer of its own, '{_output_layer_name(model, layer.name)}'"
                    f", and so a new output name, which compile_config's losses or metrics "
                    f"name as '{layer.name}': --unsafe-fixes makes it; or load it with Keras "
                    "3.3.0 or newer"
                )
            else:
                fix, hint = SAFE, ""
            outcome = (
                "fails with 'IndexError: list index out of range'"
                if call + 1 >= calls
                else f"silently returns the output of call {call + 2} instead"
            )
            findings.append(
                Finding(
                    code=RULE.code,
                    message=(
                        f"output {history[:3]} of model '{model.name}' is call {call + 1} of "
                        f"nested model '{layer.name}'; Keras 3.0-3.2 read node index "
                        f"{node_index} as call {node_index + 1} and load_model {outcome}"
                    ),
                    location=location,
                    layer=layer.name,
                    fix=fix,
                    hint=hint,
                )
            )
    return findings


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    changes = []
    for finding in findings:
        model = _model_of(ctx, finding.location)
        layer = next(layer for layer in model.layers if layer.name == finding.layer)
        history = pointer.get(edit.config, finding.location)
        if layer.calls == 1:
            history[1] = 0
            changes.append(
                Change(
                    RULE.code,
                    finding.location,
                    f"node index of the call of nested model '{layer.name}' written as 0, "
                    "which every Keras 3 release reads as that call",
                )
            )
            continue
        name, call = _output_layer_name(model, layer.name), history[1] - 1
        layers = pointer.get(edit.config, f"{model.pointer}/config/layers")
        layers.append(_identity(name, [[layer.name, call, history[2], {}]], layers))
        history[:3] = [name, 0, 0]
        changes.append(
            Change(
                RULE.code,
                finding.location,
                f"the output is now Identity layer '{name}' on call {call + 1} of "
                f"'{layer.name}', which every Keras 3 release reads as that call "
                f"(the model's output is named '{name}')",
            )
        )
    return changes


def _identity(name: str, inbound: list, siblings: list) -> dict:
    """The config of an Identity layer called on `inbound` (legacy form: the
    loader defers it until the call it reads exists), with the dtype of the
    model's other layers."""
    config: dict[str, Any] = {"name": name, "trainable": True}
    dtype = next(
        (
            sibling["config"]["dtype"]
            for sibling in siblings
            if isinstance(sibling, dict)
            and isinstance(sibling.get("config"), dict)
            and "dtype" in sibling["config"]
        ),
        None,
    )
    if dtype is not None:
        config["dtype"] = dtype
    return {
        "module": "keras.layers",
        "class_name": "Identity",
        "config": config,
        "registered_name": None,
        "name": name,
        "inbound_nodes": [inbound],
    }


def _output_layer_name(model: ModelGraph, nested: str) -> str:
    taken = {layer.name for layer in model.layers}
    name, number = f"{nested}_output", 0
    while name in taken:
        number += 1
        name = f"{nested}_output_{number}"
    return name


def _named_in_compile_config(config: dict, model: ModelGraph, name: str) -> bool:
    """Whether the top model's compile_config names the output `name` (losses,
    metrics or loss weights given per output, by name)."""
    if model.pointer:
        return False
    compile_config = config.get("compile_config")
    found = False

    def visit(value: Any) -> None:
        nonlocal found
        if isinstance(value, dict):
            found |= name in value
            for item in value.values():
                visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)

    visit(compile_config)
    return found


def _model_of(ctx: Context, location: str) -> ModelGraph:
    model_pointer = location.split("/config/output_layers")[0]
    return next(model for model in ctx.graph.functional_models() if model.pointer == model_pointer)


def _outputs(config: dict, model: ModelGraph):
    """(pointer, [layer, node_index, tensor_index]) of each output of `model`: a
    list of them, a dict, or one bare (Keras 3.11+)."""
    location = f"{model.pointer}/config/output_layers"
    try:
        value: Any = pointer.get(config, location)
    except (KeyError, IndexError, TypeError, ValueError):
        return
    if is_tensor_triple(value):
        yield location, value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if is_tensor_triple(item):
                yield f"{location}/{index}", item
    elif isinstance(value, dict):
        for key, item in value.items():
            if is_tensor_triple(item):
                yield f"{location}/{pointer.of([key])[1:]}", item
