"""KR702: `batch_input_shape`, Keras 2's way to give a layer its input shape.

tf.keras writes `batch_input_shape` on an InputLayer and on the first layer of a
Sequential built with `input_shape=`. Keras 3's InputLayer takes `batch_shape`
(3.0.0 fails: "You must pass a shape argument"), and other layers reject it:

    ValueError: Unrecognized keyword arguments passed to Dense:
    {'batch_input_shape': [None, 5]}
"""

from __future__ import annotations

from .. import keras2, pointer
from ..context import Context
from ..edit import Edit
from ..findings import ERROR, SAFE, SOMETIMES, Change, Finding, Rule
from ..graph import SEQUENTIAL

EXPLANATION = """\
Keras 2 gives a model its input shape with `batch_input_shape`: on the
InputLayer (`{"batch_input_shape": [null, 5], ...}`) and, for a Sequential
built with `Dense(8, input_shape=(5,))`, on that first layer too. Keras 3
reads neither everywhere:

    ValueError: Unrecognized keyword arguments passed to Dense:
    {'batch_input_shape': [None, 5]}
    ValueError: You must pass a `shape` argument.        (Keras 3.0.0, InputLayer)

Fix (safe, config only): on an InputLayer, rename it to `batch_shape` (what
Keras 3 writes); on any other layer, drop it, and when that layer is the first
of a Sequential that has no InputLayer, put an InputLayer with that
`batch_shape` (and the layer's dtype) before it, as Keras 3 builds such a
Sequential. An Embedding's `input_length` (Keras 2 needed it to infer shapes
when no input shape was given) is dropped: Keras 3 takes the sequence length
from the input, and the computation is the same. Weights are untouched: an
InputLayer has none and is not in `model.layers`.
"""

RULE = Rule(
    code="KR702",
    name="keras2-input-shape",
    severity=ERROR,
    summary="Keras 2's batch_input_shape: Keras 3 wants an InputLayer with batch_shape",
    explanation=EXPLANATION,
    fix=SOMETIMES,
)


def detect(ctx: Context) -> list[Finding]:
    if not keras2.applies(ctx.archive):
        return []
    found = []
    for layer in ctx.graph.walk():
        if layer.class_name == "Embedding" and "input_length" in layer.config:
            found.append(
                Finding(
                    RULE.code,
                    f"Embedding '{layer.name}' has input_length "
                    f"{layer.config['input_length']}: Keras 3 takes the length from its input",
                    f"{layer.pointer}/config/input_length",
                    ERROR,
                    layer=layer.name,
                    fix=SAFE,
                )
            )
        shape = layer.config.get("batch_input_shape")
        if shape is None:
            continue
        where = f"{layer.pointer}/config/batch_input_shape"
        if layer.class_name == "InputLayer":
            what = "rename it to batch_shape"
        else:
            what = "Keras 3 rejects it on any layer but an InputLayer"
        found.append(
            Finding(
                RULE.code,
                f"{layer.class_name} '{layer.name}' has batch_input_shape {shape}: {what}",
                where,
                ERROR,
                layer=layer.name,
                fix=SAFE,
            )
        )
    return found


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    changes = []
    # from the last to the first, so inserting an InputLayer moves no later pointer
    for finding in sorted(findings, key=lambda f: _indices(f.location), reverse=True):
        if finding.location.endswith("/input_length"):
            length = pointer.get(edit.config, finding.location)
            arguments, _ = pointer.parent(edit.config, finding.location)
            del arguments["input_length"]
            changes.append(Change(RULE.code, finding.location, f"dropped {length}"))
            continue
        layer_pointer = finding.location.removesuffix("/config/batch_input_shape")
        layer = pointer.get(edit.config, layer_pointer)
        arguments = layer["config"]
        shape = arguments.pop("batch_input_shape")
        if layer.get("class_name") == "InputLayer":
            arguments["batch_shape"] = shape
            changes.append(Change(RULE.code, finding.location, "renamed to batch_shape"))
            continue
        layers, index = pointer.parent(edit.config, layer_pointer)
        model = pointer.get(edit.config, layer_pointer.rpartition("/config/layers/")[0] or "")
        first_of_sequential = (
            index == 0
            and isinstance(layers, list)
            and _kind(ctx, layer_pointer) == SEQUENTIAL
            and isinstance(model, dict)
        )
        if first_of_sequential:
            name = f"{arguments.get('name', 'input')}_input"
            layers.insert(0, _input_layer(shape, arguments.get("dtype"), name))
            changes.append(
                Change(
                    RULE.code,
                    finding.location,
                    f"moved to a new InputLayer '{name}' (batch_shape {shape}) before it",
                )
            )
        else:
            changes.append(Change(RULE.code, finding.location, f"dropped {shape}"))
    return changes


def _kind(ctx: Context, layer_pointer: str) -> str | None:
    """The kind of the model whose layer `layer_pointer` is."""
    model_pointer = layer_pointer.rpartition("/config/layers/")[0]
    if model_pointer == ctx.graph.pointer:
        return ctx.graph.kind
    for layer in ctx.graph.walk():
        if layer.pointer == model_pointer and layer.submodel is not None:
            return layer.submodel.kind
    return None


def _input_layer(shape, dtype, name: str) -> dict:
    # a layer's dtype may be a policy ("mixed_float16"); its input is float32 then
    if not isinstance(dtype, str) or dtype.startswith("mixed_"):
        dtype = "float32"
    return {
        "module": "keras.layers",
        "class_name": "InputLayer",
        "config": {"batch_shape": shape, "dtype": dtype, "sparse": False, "name": name},
        "registered_name": None,
    }


def _indices(location: str) -> tuple[int, ...]:
    return tuple(int(token) for token in location.split("/") if token.isdigit())
