"""KR403: a layer whose variables are nowhere in the archive.

The loader restores each layer object from the group of model.weights.h5 its
place in the model names (`layers/functional_1/layers/dense`); a layer it
builds (a Functional model calls every layer; `build_config` builds the others)
that finds that group empty fails the load. When no other group of the file
holds the variables either, they are gone: no repair of the archive can bring
them back.

Decided from config.json and the weights file's metadata alone, for built-in
layer classes known to create variables when built (`VARIABLE_CLASSES`);
other classes, custom ones included, are never reported. Copies of one layer
object (a common `shared_object_id`) are read once, at the first path the
loader meets. A layer whose name and class another description shares, with
variables stored there, is KR303's (its weights are in the archive).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .. import pointer
from ..context import Context
from ..findings import ERROR, NEVER, Finding, Rule
from ..graph import FUNCTIONAL, SUBCLASSED, Layer, ModelGraph, is_builtin

if TYPE_CHECKING:
    from ..weights_tree import WeightsTree

EXPLANATION = """\
Keras stores a layer's variables in model.weights.h5 under a group named
after its place in the model (`layers/dense_1/vars`, and for a nested model
`layers/functional_1/layers/dense/vars`), and the loader looks for them there
and nowhere else. A layer the loader builds whose group holds nothing fails
the load, in every Keras 3 release:

    ValueError: A total of 3 objects could not be loaded. Example error
    message for object <Dense name=dec_hidden, built=True>:
    Layer 'dec_hidden' expected 2 variables, but received 0 variables during
    loading. Expected: ['kernel', 'bias']

When no other group of the file holds them, the values are gone: they were
never written, or a tool dropped them. `keras.saving.KerasFileEditor` (3.6
and newer) does: reading a file it skips every group whose own `vars` is
empty, with all under it, so the weights file its `save()` writes lacks the
layers of nested models (`layers/functional/...`) and of layers that keep
their variables in sub-layers (MultiHeadAttention, LSTM, GRU, ...); put back
into a `.keras` archive, it makes one that cannot load.

No fix: kerasrepair cannot invent the values. Save the model again from the
trained model (`model.save(...)`), or from an earlier copy of the archive. To
use what is left, build the model from config.json and load the weights
that are there, leaving these layers at fresh initial values:

    model = keras.models.model_from_json(open("config.json").read())
    model.load_weights("model.keras", skip_mismatch=True)

(`keras.saving.load_model` has no `skip_mismatch`.) Only Keras's own layer
classes known to create variables are checked; custom classes are not.
When groups that no layer claims hold weights (KR402), the finding says so:
the archive's config.json and weights may not belong together.
"""

RULE = Rule(
    code="KR403",
    name="missing-weights",
    severity=ERROR,
    summary="A layer's variables are nowhere in model.weights.h5: the load fails, the "
    "weights are gone",
    explanation=EXPLANATION,
    fix=NEVER,
    breaks_in=None,
)

WEIGHTS_FILE_EXPECTED = "Expected a model.weights.h5 or model.weights.npz file."


def _count_kernel(config: dict) -> int:
    return 1 + bool(config.get("use_bias", True))


def _count_separable(config: dict) -> int:
    return 2 + bool(config.get("use_bias", True))


def _count_einsum(config: dict) -> int:
    return 1 + (config.get("bias_axes") is not None)


def _count_batch_norm(config: dict) -> int | None:
    if config.get("renorm"):
        return None  # three more, in the releases that have renorm
    return 2 + bool(config.get("center", True)) + bool(config.get("scale", True))


def _count_layer_norm(config: dict) -> int:
    rms = bool(config.get("rms_scaling", False))
    scale = bool(config.get("scale", True)) or rms
    return scale + (bool(config.get("center", True)) and not rms)


def _count_group_norm(config: dict) -> int:
    return bool(config.get("scale", True)) + bool(config.get("center", True))


def _one(config: dict) -> int:
    return 1


def _in_sub_layers(config: dict) -> None:
    return None


# Built-in layer classes whose `build` creates variables in every Keras 3
# release (read in 3.0.5, 3.6.0 and 3.15.1): class name -> how many variables
# the layer holds itself, as Keras's error counts them (0: none, as
# configured; None: in sub-layers, which Keras's error names, or not plain
# from the config).
VARIABLE_CLASSES: dict[str, Callable[[dict], int | None]] = {
    "Dense": _count_kernel,
    "EinsumDense": _count_einsum,
    "Embedding": _one,
    "Conv1D": _count_kernel,
    "Conv2D": _count_kernel,
    "Conv3D": _count_kernel,
    "Conv1DTranspose": _count_kernel,
    "Conv2DTranspose": _count_kernel,
    "Conv3DTranspose": _count_kernel,
    "DepthwiseConv1D": _count_kernel,
    "DepthwiseConv2D": _count_kernel,
    "SeparableConv1D": _count_separable,
    "SeparableConv2D": _count_separable,
    "BatchNormalization": _count_batch_norm,
    "LayerNormalization": _count_layer_norm,
    "GroupNormalization": _count_group_norm,
    "PReLU": _one,
    "SimpleRNN": _in_sub_layers,  # in its `cell`
    "LSTM": _in_sub_layers,
    "GRU": _in_sub_layers,
    "ConvLSTM1D": _in_sub_layers,
    "ConvLSTM2D": _in_sub_layers,
    "ConvLSTM3D": _in_sub_layers,
    "MultiHeadAttention": _in_sub_layers,  # query, key, value and output sub-layers
    "GroupQueryAttention": _in_sub_layers,
}
SUB_LAYERS = {name for name, count in VARIABLE_CLASSES.items() if count is _in_sub_layers}


def detect(ctx: Context) -> list[Finding]:
    model = ctx.graph
    if model.kind == SUBCLASSED:
        return []  # its weight paths follow attribute names config.json does not hold
    expecting = [layer for layer in _loaded_layers(ctx.config, model) if _has_variables(layer)]
    if not expecting:
        return []
    weights = ctx.weights()
    if weights.format == "none":
        return [_no_weights_file(expecting)]
    if weights.format != "h5":
        return []  # npz: pickled, not described; legacy-h5: Keras 2's layout (KR708)
    missing = [
        layer
        for layer in expecting
        if not weights.params_under(layer.weights_path)
        and not _behind_a_link(layer.weights_path, weights)
    ]
    if not missing:
        return []
    described_elsewhere = {
        (layer.name, layer.class_name)
        for layer in model.walk()
        if layer.weights_path
        and weights.params_under(layer.weights_path)
        and layer.submodel is None
    }
    unclaimed = weights.unclaimed_groups(
        {layer.weights_path for layer in model.walk() if layer.weights_path}
    )
    return [
        _finding(layer, weights, unclaimed)
        for layer in missing
        if (layer.name, layer.class_name) not in described_elsewhere  # KR303's
    ]


def _finding(layer: Layer, weights: WeightsTree, unclaimed: list[str]) -> Finding:
    count = _expected(layer)
    if layer.class_name in SUB_LAYERS:
        fails = (
            "Keras fails on each of its sub-layers (\"Layer '<sub-layer>' expected ... "
            'variables, but received 0 variables during loading")'
        )
    else:
        fails = (
            f"Keras fails: \"Layer '{layer.name}' expected {count if count else '...'} "
            'variables, but received 0 variables during loading"'
        )
    text = (
        f"layer '{layer.name}' ({layer.class_name}) has no weights in {weights.entry}: the "
        f"loader reads them at '{layer.weights_path}', which holds no variables; {fails}"
    )
    named = [g for g in unclaimed if weights.var_groups.get(f"{g}/vars") == layer.name]
    if named:
        text += (
            f". The group '{named[0]}', named '{layer.name}', holds weights no layer of "
            "config.json claims: config.json and the weights do not belong together"
        )
        hint = "use the config.json and model.weights.h5 that were saved together"
    elif unclaimed:
        text += (
            f". {len(unclaimed)} group(s) that no layer of config.json claims hold weights "
            f"(e.g. '{unclaimed[0]}'): if they are this layer's, config.json and the "
            "weights do not belong together"
        )
        hint = "use the config.json and model.weights.h5 that were saved together"
    else:
        text += (
            ". No other group of the file holds them: the weights are gone, and fix "
            "cannot recover them"
        )
        hint = (
            "save the model again from the trained model (model.save); to use what is "
            "left, build it with keras.models.model_from_json(config.json) and call "
            "model.load_weights(archive, skip_mismatch=True): this layer keeps fresh "
            "initial values"
        )
    return Finding(
        code=RULE.code,
        message=text,
        location=layer.pointer,
        layer=layer.name,
        hint=hint,
    )


def _no_weights_file(expecting: list[Layer]) -> Finding:
    names = ", ".join(f"'{layer.name}'" for layer in expecting[:5])
    more = f" and {len(expecting) - 5} more" if len(expecting) > 5 else ""
    return Finding(
        code=RULE.code,
        message=f'the archive has no weights file: Keras refuses it ("{WEIGHTS_FILE_EXPECTED}'
        f'"), and the variables of {len(expecting)} layer(s) ({names}{more}) are nowhere '
        "in it: the weights are gone, and fix cannot recover them",
        location="model.weights.h5",
        hint="save the model again from the trained model (model.save)",
    )


def _loaded_layers(config: dict[str, Any], model: ModelGraph) -> Iterator[Layer]:
    """The layer objects the loader builds, each once, at the first path it
    meets (a depth-first walk in `model.layers` order, as `saving_lib`):
    descriptions that share a `shared_object_id` are one object, and a nested
    model met again is not walked again."""
    seen: set[int] = set()

    def walk(owner: ModelGraph, owner_built: bool) -> Iterator[Layer]:
        for layer in owner.layers:
            if layer.weights_path is None:
                continue  # a keras.ops call
            serialized = pointer.get(config, layer.pointer)
            mark = serialized.get("shared_object_id") if isinstance(serialized, dict) else None
            if isinstance(mark, int) and not isinstance(mark, bool):
                if mark in seen:
                    continue
                seen.add(mark)
            built = bool(
                (isinstance(serialized, dict) and serialized.get("build_config"))
                or (owner.kind == FUNCTIONAL and layer.nodes)
                or (owner.kind != FUNCTIONAL and owner_built)
            )
            if layer.submodel is not None:
                yield from walk(layer.submodel, built or _sequential_built(layer.submodel))
            elif built:
                yield layer

    return walk(model, _sequential_built(model) or bool(_build_config(config)))


def _sequential_built(model: ModelGraph) -> bool:
    """A Sequential model with an input is built as it is made."""
    return any(layer.class_name == "InputLayer" for layer in model.layers)


def _build_config(serialized: Any) -> Any:
    return serialized.get("build_config") if isinstance(serialized, dict) else None


def _has_variables(layer: Layer) -> bool:
    """A built-in class that creates variables when built, as configured."""
    if layer.class_name not in VARIABLE_CLASSES or not is_builtin(layer.module):
        return False
    if layer.registered_name not in (None, layer.class_name):
        return False  # registered under another name: not Keras's class
    return VARIABLE_CLASSES[layer.class_name](layer.config) != 0


def _expected(layer: Layer) -> int | None:
    """How many variables Keras's error will say the layer expected, when the
    config says it plainly (no LoRA, no quantization)."""
    config = layer.config
    if config.get("lora_rank") or config.get("quantization_config"):
        return None
    dtype = config.get("dtype")
    if isinstance(dtype, dict) and "Quantized" in str(dtype.get("class_name")):
        return None
    return VARIABLE_CLASSES[layer.class_name](config)


def _behind_a_link(group: str, weights: WeightsTree) -> bool:
    """A link kerasrepair does not follow (KR901), or a dataset it does not read
    (KR910), may stand for the group, or be its variable."""
    return any(
        problem.path == group
        or problem.path.startswith(group + "/")
        or group.startswith(problem.path + "/")
        for problem in weights.problems
    )
