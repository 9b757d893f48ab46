"""A Keras 3 `model.weights.h5` for a Keras 2 model: where each value goes, and the writing.

Keras 3's `saving_lib` saves a model by walking it: each saveable (the model, its
layers, their sub-layers, the optimizer) writes its own variables at
`<path>/vars/<i>`, `i` the index in `layer._trainable_variables +
layer._non_trainable_variables` (creation order), then its children under their
attribute names, in sorted order (private ones last). A Functional or Sequential
model saves its layers first, under `layers/<class in snake case>[_<n>]` (a
counter per class, in `model.layers` order: Keras's map_graph order for a
Functional model, which `graph.keras_layer_order` computes; a Sequential model's
InputLayer is not among its layers). The paths real Keras 3 (3.0.5 and 3.15.1,
the same for these) writes:

    Dense, Conv1D/2D/3D, Conv*Transpose   layers/dense/vars/0 kernel, 1 bias
    DepthwiseConv1D/2D                    vars/0 depthwise_kernel, 1 bias
    SeparableConv1D/2D                    vars/0 depthwise_kernel, 1 pointwise_kernel, 2 bias
    BatchNormalization                    vars/0 gamma, 1 beta, 2 moving_mean, 3 moving_variance
    LayerNormalization                    vars/0 gamma, 1 beta
    Embedding                             vars/0 embeddings
    PReLU                                 vars/0 alpha
    Normalization (adapted)               vars/0 mean, 1 variance, 2 count
    LSTM, GRU, SimpleRNN                  layers/lstm/cell/vars/0 kernel, 1 recurrent_kernel, 2 bias
    Bidirectional                         layers/bidirectional/forward_layer/cell/vars/...,
                                          layers/bidirectional/backward_layer/cell/vars/...
    TimeDistributed                       layers/time_distributed/layer/vars/...
    nested Functional / Sequential        layers/functional/layers/dense/vars/...,
                                          layers/sequential/layers/dense/vars/...

(absent `bias`, `gamma` or `beta` -- `use_bias`, `scale`, `center` off -- shift the
indices down). A legacy `.h5` lists a layer's weights as `layer.trainable_weights +
layer.non_trainable_weights`: for a nested model, all its sublayers' trainable
weights, then their non-trainable ones. The plan computes that order from the
config (Keras 3's own legacy loader relies on it too), checks each weight's own
name (`kernel` of "lstm/lstm_cell/kernel:0") against it, and places the weight
where Keras 3 keeps the same variable.

The optimizer: Keras 3 stores `optimizer/vars/0` the iteration, `1` the
learning rate (absent when it is a schedule), then the slots built over
`model.trainable_variables` (the same order as above, trainable only, frozen
layers left out), in the order each optimizer's `build` creates them (Adam: m
and v interleaved per variable; RMSprop: all velocities, then all momentums,
then all average gradients). tf.keras 2.11-2.15 names its slots
`<Optimizer>/<slot>/<variable name>`; they are placed by those names. State
that has no place in Keras 3, or whose place differs between Keras 3 releases,
is left out and said in `Plan.dropped`: the model still loads, with a fresh
optimizer state.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import h5py
import numpy as np

from . import graph
from .errors import ArchiveError
from .hdf5_file import HeapCheckedFile
from .legacy_h5 import H5_ERRORS, KERAS3_WEIGHTS, RESAVE, LegacyModel, LegacyWeight

# -- the plan


@dataclass(frozen=True)
class FromDataset:
    """The value of a dataset of the source HDF5 file."""

    path: str


@dataclass(frozen=True)
class Value:
    """A new scalar, e.g. the learning rate."""

    value: float | int
    dtype: str


Source = FromDataset | Value


@dataclass(frozen=True)
class Plan:
    # Keras 3 dataset path -> where its value comes from, in the order Keras 3 writes them
    datasets: tuple[tuple[str, Source], ...]
    # every group Keras 3 would create (intermediate ones and the empty `vars` of
    # weightless layers included), parents first, in the order Keras 3 creates them
    groups: tuple[str, ...]
    # what cannot be placed, one line each; non-empty => nothing is written
    problems: tuple[str, ...]
    # state knowingly left out, with the reason (the model still loads)
    dropped: tuple[str, ...] = ()
    # `vars` group -> the `name` attribute Keras 3.6+ writes on it (the layer's name)
    names: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


# -- what Keras 3 keeps, per layer


@dataclass
class _Var:
    short: str  # Keras's variable name: "kernel"
    trainable: bool  # created trainable (add_weight(trainable=...))


@dataclass
class _Node:
    """A saveable layer: its weight group, own variables, and children."""

    group: str  # e.g. "layers/lstm"
    name: str | None  # the layer's name: the `name` attribute of its `vars` group
    class_name: str
    trainable: bool
    own: list[_Var] = field(default_factory=list)
    # (attribute, child) in the order the layer tracks them (`_layers`)
    children: list[tuple[str, _Node]] = field(default_factory=list)
    known: bool = True  # its variables are known from its class

    def own_path(self, index: int) -> str:
        return f"{self.group}/vars/{index}"


@dataclass
class _Slot:
    """A Keras 3 variable, where it comes from in the legacy order."""

    node: _Node
    index: int  # in node.own
    frozen: bool  # the layer or one around it is not trainable

    @property
    def path(self) -> str:
        return self.node.own_path(self.index)

    @property
    def short(self) -> str:
        return self.node.own[self.index].short

    @property
    def trains(self) -> bool:
        return self.node.own[self.index].trainable and not self.frozen


def _flag(config: dict, key: str, default: bool = True) -> bool:
    value = config.get(key, default)
    return value if isinstance(value, bool) else default


def _vars(*names: str, trainable: bool = True) -> list[_Var]:
    return [_Var(name, trainable) for name in names]


def _kernel_bias(kernels: tuple[str, ...]):
    def own(config: dict) -> list[_Var]:
        return _vars(*kernels, *(("bias",) if _flag(config, "use_bias") else ()))

    return own


def _batch_normalization(config: dict) -> list[_Var]:
    return [
        *_vars(*(("gamma",) if _flag(config, "scale") else ())),
        *_vars(*(("beta",) if _flag(config, "center") else ())),
        *_vars("moving_mean", "moving_variance", trainable=False),
    ]


def _layer_normalization(config: dict) -> list[_Var]:
    if config.get("rms_scaling"):
        return _vars("gamma")
    return [
        *_vars(*(("gamma",) if _flag(config, "scale") else ())),
        *_vars(*(("beta",) if _flag(config, "center") else ())),
    ]


def _normalization(config: dict) -> list[_Var]:
    if config.get("mean") is not None or config.get("variance") is not None:
        return []  # given as arguments: constants, not variables
    return _vars("mean", "variance", "count", trainable=False)


# Keras 3 class -> its own variables, in creation order (trainable ones first)
OWN_VARIABLES = {
    "Dense": _kernel_bias(("kernel",)),
    "Conv1D": _kernel_bias(("kernel",)),
    "Conv2D": _kernel_bias(("kernel",)),
    "Conv3D": _kernel_bias(("kernel",)),
    "Conv1DTranspose": _kernel_bias(("kernel",)),
    "Conv2DTranspose": _kernel_bias(("kernel",)),
    "Conv3DTranspose": _kernel_bias(("kernel",)),
    "DepthwiseConv1D": _kernel_bias(("depthwise_kernel",)),
    "DepthwiseConv2D": _kernel_bias(("depthwise_kernel",)),
    "SeparableConv1D": _kernel_bias(("depthwise_kernel", "pointwise_kernel")),
    "SeparableConv2D": _kernel_bias(("depthwise_kernel", "pointwise_kernel")),
    "BatchNormalization": _batch_normalization,
    "LayerNormalization": _layer_normalization,
    "Embedding": lambda config: _vars("embeddings"),
    "PReLU": lambda config: _vars("alpha"),
    "Normalization": _normalization,
    "LSTMCell": _kernel_bias(("kernel", "recurrent_kernel")),
    "GRUCell": _kernel_bias(("kernel", "recurrent_kernel")),
    "SimpleRNNCell": _kernel_bias(("kernel", "recurrent_kernel")),
}
# Keras 3 RNN layer -> the class of its cell (saved under `cell`)
RNN_CELLS = {"LSTM": "LSTMCell", "GRU": "GRUCell", "SimpleRNN": "SimpleRNNCell"}
# the cell's name in Keras 3 (the `name` of its vars group)
CELL_NAMES = {"LSTMCell": "lstm_cell", "GRUCell": "gru_cell", "SimpleRNNCell": "simple_rnn_cell"}
# Keras 3 layers whose variables live in sub-layers or are built otherwise than
# plain own variables: never placed by the fallback rule
COMPOSITE = {
    "RNN",
    "StackedRNNCells",
    "ConvLSTM1D",
    "ConvLSTM2D",
    "ConvLSTM3D",
    "MultiHeadAttention",
    "GroupQueryAttention",
    "Attention",
    "AdditiveAttention",
    "TextVectorization",
    "StringLookup",
    "IntegerLookup",
    "Hashing",
    "Discretization",
    "CategoryEncoding",
    "HashedCrossing",
    "Lambda",
    "TFSMLayer",
}


# Keras 3 layers without variables
WEIGHTLESS = {
    "InputLayer",
    "Activation",
    "ActivityRegularization",
    "Add",
    "AlphaDropout",
    "Average",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "CenterCrop",
    "Concatenate",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "Dot",
    "Dropout",
    "ELU",
    "Flatten",
    "GaussianDropout",
    "GaussianNoise",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "Identity",
    "LeakyReLU",
    "Masking",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "Maximum",
    "Minimum",
    "Multiply",
    "Permute",
    "ReLU",
    "RepeatVector",
    "Rescaling",
    "Reshape",
    "Resizing",
    "Softmax",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "Subtract",
    "ThresholdedReLU",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
}


def _config(serialized: Any) -> dict:
    inner = serialized.get("config") if isinstance(serialized, dict) else None
    return inner if isinstance(inner, dict) else {}


def _class_name(serialized: Any) -> str:
    return str(serialized.get("class_name")) if isinstance(serialized, dict) else "?"


def _layer_node(serialized: dict, group: str, submodel: graph.ModelGraph | None) -> _Node:
    """What Keras 3 keeps for one layer (config dict) saved at `group`."""
    config = _config(serialized)
    class_name = _class_name(serialized)
    name = config.get("name") if isinstance(config.get("name"), str) else None
    node = _Node(group, name, class_name, _flag(config, "trainable"))
    if submodel is not None:
        node.children = [
            (f"layers/{path}", child) for path, child in _model_children(submodel, group + "/")
        ]
    elif class_name in OWN_VARIABLES:
        node.own = OWN_VARIABLES[class_name](config)
    elif class_name in RNN_CELLS:
        cell_class = RNN_CELLS[class_name]
        cell = _Node(
            f"{group}/cell",
            CELL_NAMES[cell_class],
            cell_class,
            node.trainable,
            own=OWN_VARIABLES[cell_class](config),
        )
        node.children = [("cell", cell)]
    elif class_name == "Bidirectional":
        inner = config.get("layer")
        backward = config.get("backward_layer") or inner
        node.children = []
        for attribute, serialized_inner, prefix in (
            ("forward_layer", inner, "forward_"),
            ("backward_layer", backward, "backward_"),
        ):
            child = _wrapped(serialized_inner, f"{group}/{attribute}")
            if child.name and serialized_inner is inner:
                child.name = prefix + child.name
            node.children.append((attribute, child))
    elif class_name == "TimeDistributed":
        node.children = [("layer", _wrapped(config.get("layer"), f"{group}/layer"))]
    elif class_name not in WEIGHTLESS:
        node.known = False
    return node


def _wrapped(serialized: Any, group: str) -> _Node:
    if not isinstance(serialized, dict):
        return _Node(group, None, "?", True, known=False)
    submodel = None
    if graph.model_kind(serialized) != graph.SUBCLASSED:
        submodel = graph.build(serialized)
    return _layer_node(serialized, group, submodel)


def _group_name(layer: graph.Layer) -> str:
    if layer.submodel is not None and layer.submodel.kind == graph.FUNCTIONAL:
        return "functional"  # whatever the config calls it ("Model" in old ones)
    if layer.submodel is not None and layer.class_name == "Sequential":
        return "sequential"
    return graph.to_snake_case(layer.class_name)


def keras_layers(model: graph.ModelGraph) -> list[graph.Layer]:
    """`model.layers` as Keras 3 builds it from the config: a Functional model's
    in map_graph order, a Sequential model's without its InputLayer."""
    layers = [layer for layer in model.layers if not layer.is_operation]
    if model.kind == graph.SEQUENTIAL:
        return [layer for layer in layers if layer.class_name != "InputLayer"]
    by_name = {layer.name: layer for layer in layers}
    ordered = [by_name[name] for name in graph.keras_layer_order(model) if name in by_name]
    seen = {id(layer) for layer in ordered}
    return ordered + [layer for layer in layers if id(layer) not in seen]


def _model_children(model: graph.ModelGraph, prefix: str) -> Iterator[tuple[str, _Node]]:
    """(group below `<prefix>layers/`, node) for each of a model's layers."""
    used: dict[str, int] = {}
    for layer in keras_layers(model):
        group_name = graph._unique_name(_group_name(layer), used)
        serialized = _serialized(layer)
        yield group_name, _layer_node(serialized, f"{prefix}layers/{group_name}", layer.submodel)


def _serialized(layer: graph.Layer) -> dict:
    return {"class_name": layer.class_name, "config": layer.config}


# -- orders


def _own_slots(node: _Node, frozen: bool) -> list[_Slot]:
    return [_Slot(node, i, frozen) for i in range(len(node.own))]


def _all_slots(node: _Node, frozen: bool) -> list[_Slot]:
    """Every variable of a layer and its children, depth first (saving order)."""
    frozen = frozen or not node.trainable
    slots = _own_slots(node, frozen)
    for _, child in node.children:
        slots += _all_slots(child, frozen)
    return slots


def _legacy_order(node: _Node) -> list[_Slot]:
    """`layer.trainable_weights + layer.non_trainable_weights` in tf.keras: the
    order of a legacy `.h5` file's weight_names for this layer."""

    def trainable(n: _Node) -> list[_Slot]:
        if not n.trainable:
            return []
        slots = [s for s in _own_slots(n, False) if n.own[s.index].trainable]
        for _, child in n.children:
            slots += trainable(child)
        return slots

    def non_trainable(n: _Node) -> list[_Slot]:
        if not n.trainable:
            return _all_slots(n, True)
        slots = [s for s in _own_slots(n, False) if not n.own[s.index].trainable]
        for _, child in n.children:
            slots += non_trainable(child)
        return slots

    return trainable(node) + non_trainable(node)


def _keras3_trainable(nodes: list[_Node]) -> list[_Slot]:
    """`model.trainable_variables` of Keras 3 (what the optimizer is built over):
    each layer's own trainable variables, then its children's; frozen layers and
    those inside them left out."""
    return [s for node in nodes for s in _all_slots(node, False) if s.trains]


def _save_order(node: _Node) -> Iterator[_Node]:
    """The nodes in the order `saving_lib._save_state` visits them: a layer,
    then its children by attribute name (a model's `layers` first)."""
    yield node
    children = node.children
    if not children or not children[0][0].startswith("layers/"):
        children = sorted(children, key=lambda item: item[0])
    for _, child in children:
        yield from _save_order(child)


# -- plan from a legacy .h5


def plan_from_legacy(config: dict, legacy: LegacyModel, optimizer: dict | None) -> Plan:
    """Where each weight of a legacy tf.keras `.h5` file (a model or a
    save_weights file) goes in Keras 3's `model.weights.h5`, for the Keras 3
    `config` (config.json, after conversion: same layer names, classes and
    nesting as the legacy model_config). `optimizer`: the compile_config's
    optimizer (for the learning rate and the slot layout), or None."""
    problems: list[str] = []
    dropped: list[str] = []
    if legacy.kind == KERAS3_WEIGHTS:
        return _failed(
            "the weights file is already in the Keras 3 layout (layers/..., vars): "
            "use it as model.weights.h5 as it is"
        )
    model, root = _root(config, problems)
    if model is None:
        return _failed(*problems)

    nodes = [child for _, child in root.children]
    by_name = {node.name: node for node in nodes}
    sources: dict[str, str] = {}  # Keras 3 path -> legacy dataset path
    legacy_names: dict[str, list[_Slot]] = {}  # legacy weight name -> where it went
    shapes: dict[str, tuple[int, ...]] = {}  # Keras 3 path -> shape
    for layer_name, weights in legacy.layers.items():
        node = by_name.get(layer_name)
        if node is None:
            if weights:
                problems.append(
                    f"layer '{layer_name}': the weights file has {len(weights)} weights for it "
                    "but config.json has no such layer; use the config and weights saved together"
                )
            continue
        for slot, weight in _place(node, weights, problems):
            sources[slot.path] = weight.path
            legacy_names.setdefault(weight.name, []).append(slot)
            shapes[slot.path] = weight.shape
    for node in nodes:
        if node.name not in legacy.layers and _all_slots(node, False):
            problems.append(
                f"layer '{node.name}' ({node.class_name}): the weights file has no weights "
                f"for it (expected {_describe(_legacy_order(node))}); "
                "use the config and weights saved together"
            )
    if legacy.top_level:
        problems.append(
            f"the weights file has {len(legacy.top_level)} weights of the model itself "
            f"(top_level_model_weights: {', '.join(w.name for w in legacy.top_level)}), "
            "which a Functional or Sequential Keras 3 model does not have; "
            "convert this subclassed model's weights in Keras 3 with model.load_weights()"
        )

    datasets: list[tuple[str, Source]] = []
    for node in _save_order(root):
        for index in range(len(node.own)):
            path = node.own_path(index)
            if path in sources:
                datasets.append((path, FromDataset(sources[path])))

    optimizer_datasets: list[tuple[str, Source]] = []
    optimizer_groups: list[tuple[str, str | None]] = []
    if not problems:
        trainable = _keras3_trainable(nodes)
        optimizer_datasets, optimizer_groups = _optimizer_from_legacy(
            legacy, optimizer, trainable, legacy_names, shapes, dropped, _mixed_float16(config)
        )
    groups, names = _groups(root, optimizer_groups)
    return Plan(
        datasets=tuple(datasets + optimizer_datasets),
        groups=groups,
        problems=tuple(problems),
        dropped=tuple(dropped),
        names=names,
    )


def _failed(*problems: str) -> Plan:
    return Plan(datasets=(), groups=(), problems=tuple(problems))


def _root(config: dict, problems: list[str]) -> tuple[graph.ModelGraph | None, _Node]:
    if not isinstance(config, dict):
        problems.append("config.json is not a JSON object")
        return None, _Node("", None, "?", True)
    model = graph.build(config)
    root = _Node("", model.name, model.class_name, _flag(_config(config), "trainable"))
    if model.kind == graph.SUBCLASSED:
        problems.append(
            f"the model is subclassed ({model.class_name}): its weights are saved under its "
            "Python attribute names, which config.json does not give; rebuild it in Keras 3 "
            "and load the weights there with model.load_weights()"
        )
        return None, root
    root.children = [(f"layers/{path}", child) for path, child in _model_children(model, "")]
    return model, root


def _describe(slots: list[_Slot]) -> str:
    return ", ".join(slot.short for slot in slots) or "none"


def _place(
    node: _Node, weights: tuple[LegacyWeight, ...], problems: list[str]
) -> list[tuple[_Slot, LegacyWeight]]:
    """Each of a legacy layer's weights with its Keras 3 variable."""
    where = f"layer '{node.name}' ({node.class_name})"
    owners = {w.name.split("/", 1)[0] for w in weights if "/" in w.name}
    for inner in _walk(node):
        if inner is node or inner.known:
            continue
        if inner.class_name in WEIGHTLESS or (
            inner.name not in owners and inner.class_name not in COMPOSITE
        ):
            inner.known = True  # no weight of the file names it: it has none
            continue
        problems.append(
            f"{where}: its part '{inner.group}' ({inner.class_name}) has weights whose "
            "Keras 3 layout is not known here; convert this model with Keras 3's "
            "legacy loader (keras.models.load_model on the .h5) instead"
        )
        return []
    unknown = [n for n in _walk(node) if not n.known]
    if unknown:
        return _place_own(node, weights, problems)
    expected = _legacy_order(node)
    if len(expected) != len(weights):
        problems.append(
            f"{where}: the weights file has {len(weights)} weights "
            f"({', '.join(w.name for w in weights) or 'none'}) where Keras 3 keeps "
            f"{len(expected)} ({_describe(expected)}); check the layer's arguments "
            "(use_bias, center, scale) against the saved model"
        )
        return []
    for slot, weight in zip(expected, weights, strict=True):
        if slot.short != weight.short_name:
            problems.append(
                f"{where}: weight '{weight.name}' is where Keras 3 keeps '{slot.short}' "
                f"(expected order: {_describe(expected)}); the layer's arguments do not "
                "match the saved weights"
            )
            return []
    return list(zip(expected, weights, strict=True))


def _place_own(
    node: _Node, weights: tuple[LegacyWeight, ...], problems: list[str]
) -> list[tuple[_Slot, LegacyWeight]]:
    """A layer of a class not known here: its weights are placed in order as
    its own variables when each is plainly its own (`<layer>/<name>:0`, or a
    bare `<name>:0`): both tf.keras and Keras 3 keep trainable ones first, in
    creation order. Weights of sub-layers (`<layer>/<part>/<name>:0`) are not."""
    if not weights:
        return []
    where = f"layer '{node.name}' ({node.class_name})"
    nested = [w.name for w in weights if not _plainly_own(w.name, node.name)]
    if node.class_name in COMPOSITE or nested:
        problems.append(
            f"{where}: Keras 3 keeps its {len(weights)} weights "
            f"({', '.join(w.name for w in weights)}) in a layout not known here; "
            "convert this model with Keras 3's legacy loader "
            "(keras.models.load_model on the .h5) or drop the layer's weights"
        )
        return []
    short = [w.short_name for w in weights]
    if len(set(short)) != len(short):
        problems.append(f"{where}: two weights share a name ({', '.join(short)})")
        return []
    node.own = [_Var(s, True) for s in short]
    return [(_Slot(node, i, False), w) for i, w in enumerate(weights)]


def _plainly_own(name: str, layer_name: str | None) -> bool:
    parts = name.split("/")
    return len(parts) == 1 or (len(parts) == 2 and parts[0] == layer_name)


def _walk(node: _Node) -> Iterator[_Node]:
    yield node
    for _, child in node.children:
        yield from _walk(child)


def _groups(
    root: _Node, optimizer_groups: list[tuple[str, str | None]]
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Every group, parents first, in the order Keras 3 (3.6+: every saveable
    with a name gets its `vars` group) creates them, and the `name` attributes."""
    groups: list[str] = []
    names: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(path: str, name: str | None) -> None:
        parts = path.split("/")
        for end in range(1, len(parts) + 1):
            prefix = "/".join(parts[:end])
            if prefix not in seen:
                seen.add(prefix)
                groups.append(prefix)
        if name is not None:
            names.append((path, name))

    for node in _save_order(root):
        add(f"{node.group}/vars" if node.group else "vars", node.name)
    for path, name in optimizer_groups:
        add(path, name)
    return tuple(groups), tuple(names)


# -- the optimizer

# Keras 3 optimizer -> how its build lays out slots: "interleaved" (one of each per
# variable, in turn: `add_optimizer_variables(vars, [a, b])`, or one loop creating
# both) or "blocks" (all of the first, then all of the next); each slot with the
# names tf.keras 2.11-2.15 gives it (`Adam/m/dense/kernel:0`). Checked in the
# sources of Keras 3.0.5 and 3.15.1 (identical for these) and in tf.keras 2.15's
# files.
INTERLEAVED = "interleaved"
BLOCKS = "blocks"


def _slot_layout(class_name: str, config: dict) -> tuple[str, list[str]] | str:
    """(layout, tf.keras slot names) of a Keras 3 optimizer, or why it is not converted."""
    if class_name in ("Adam", "AdamW"):
        if config.get("amsgrad"):
            return "amsgrad's velocity_hat slots follow the interleaved m and v (not converted)"
        return INTERLEAVED, ["m", "v"]
    if class_name == "Adamax":
        return INTERLEAVED, ["m", "u"]
    if class_name == "Adadelta":
        return INTERLEAVED, ["accumulated_grad", "accumulated_delta_var"]
    if class_name == "Ftrl":
        return INTERLEAVED, ["accumulator", "linear"]
    if class_name == "Adagrad":
        return BLOCKS, ["accumulator"]
    if class_name == "Lion":
        return BLOCKS, ["m"]
    if class_name == "SGD":
        return BLOCKS, ["m"] if config.get("momentum", 0.0) else []
    if class_name == "RMSprop":
        slots = ["velocity"]
        if config.get("momentum", 0.0):
            slots.append("momentum")
        if config.get("centered"):
            slots.append("average_gradient")
        return BLOCKS, slots
    if class_name == "Nadam":
        return (
            "Keras 3 keeps Nadam's u_product before the slots up to 3.7 and after them "
            "from 3.10: no one file loads in both"
        )
    return f"the slot layout of {class_name} is not known here"


LOSS_SCALE = ("LossScaleOptimizer", "LossScaleOptimizerV3")  # Keras 3, tf.keras 2.11+


def _mixed_float16(config: dict) -> bool:
    """Whether Keras 3's compile wraps the optimizer in a LossScaleOptimizer:
    the model's dtype policy is mixed_float16 (`auto_scale_loss`)."""
    policy = _config(config).get("dtype")
    if isinstance(policy, dict):
        policy = _config(policy).get("name")
    return policy == "mixed_float16"


OPTIMIZER_NAMES = {  # compile(optimizer="adam") keeps the string
    "adam": "Adam",
    "adamw": "AdamW",
    "adamax": "Adamax",
    "adadelta": "Adadelta",
    "adagrad": "Adagrad",
    "ftrl": "Ftrl",
    "lion": "Lion",
    "nadam": "Nadam",
    "rmsprop": "RMSprop",
    "sgd": "SGD",
}


def _optimizer_parts(optimizer: dict | str) -> tuple[str, dict]:
    if isinstance(optimizer, str):
        return OPTIMIZER_NAMES.get(optimizer.lower(), optimizer), {}
    class_name = str(optimizer.get("class_name", "?")).split(">")[-1]
    config = optimizer.get("config")
    return class_name, config if isinstance(config, dict) else {}


def _learning_rate(config: dict) -> float | None | str:
    """The learning rate variable's value; None for a schedule (no variable)."""
    rate = config.get("learning_rate", 0.001)
    if isinstance(rate, bool):
        return "its learning_rate is not a number"
    if isinstance(rate, (int, float)):
        return float(rate)
    if isinstance(rate, dict):
        return None  # a LearningRateSchedule: Keras 3 keeps no variable for it
    return "its learning_rate is not a number or a schedule"


def _unwrap(
    optimizer: dict | str, mixed: bool, what: str, dropped: list[str]
) -> tuple[str, dict, dict | None] | None:
    """The optimizer's class and config, and the LossScaleOptimizer around it
    (its config; `{}` when Keras 3's compile adds one for a mixed_float16
    model), or None (said in `dropped`) when a LossScaleOptimizer has no inner one."""
    class_name, config = _optimizer_parts(optimizer)
    if class_name not in LOSS_SCALE:
        return class_name, config, {} if mixed else None  # {}: auto_scale_loss wraps it
    inner = config.get("inner_optimizer")
    if not isinstance(inner, (dict, str)):
        dropped.append(f"{what}: the LossScaleOptimizer has no inner_optimizer")
        return None
    return (*_optimizer_parts(inner), config)


def _optimizer_from_legacy(
    legacy: LegacyModel,
    optimizer: dict | str | None,
    trainable: list[_Slot],
    legacy_names: dict[str, list[_Slot]],
    shapes: dict[str, tuple[int, ...]],
    dropped: list[str],
    mixed: bool,
) -> tuple[list[tuple[str, Source]], list[tuple[str, str | None]]]:
    state = legacy.optimizer
    if not state:
        return [], []
    what = f"the optimizer state ({len(state)} variables)"
    if optimizer is None:
        dropped.append(f"{what}: config.json has no compiled optimizer to give it to")
        return [], []
    unwrapped = _unwrap(optimizer, mixed, what, dropped)
    if unwrapped is None:
        return [], []
    class_name, config, wrapper = unwrapped

    iteration = next((w for w in state if w.short_name == "iteration" and w.shape == ()), None)
    if iteration is None:
        legacy_style = any(w.short_name == "iter" for w in state)
        dropped.append(
            f"{what}: "
            + (
                "it is a tf.keras legacy optimizer's (tf.keras.optimizers.legacy), whose "
                "update rules differ from Keras 3's"
                if legacy_style
                else "it has no iteration count"
            )
        )
        return [], []
    rate = _learning_rate(config)
    if isinstance(rate, str):
        dropped.append(f"{what}: {rate}")
        return [], []
    head: list[Source] = [FromDataset(iteration.path)]
    if rate is not None:
        head.append(Value(rate, "float32"))
    slots_state = [w for w in state if w is not iteration]

    layout = _slot_layout(class_name, config)
    reason = layout if isinstance(layout, str) else None
    if reason is None and (config.get("use_ema") or config.get("gradient_accumulation_steps")):
        reason = "its EMA or gradient accumulation variables are not converted"
    if reason is None and not slots_state:
        values: list[Source] = head  # never built (compiled, not trained): as Keras 3 saves it
    elif reason is not None:
        dropped.append(f"{what}: {reason}")
        return [], []
    else:
        values = _slots(layout, slots_state, trainable, legacy_names, shapes, head, what, dropped)
        if values is None:
            return [], []

    return _optimizer_datasets(values, config, wrapper, dropped)


def _slots(
    layout: tuple[str, list[str]],
    state: list[LegacyWeight],
    trainable: list[_Slot],
    legacy_names: dict[str, list[_Slot]],
    shapes: dict[str, tuple[int, ...]],
    head: list[Source],
    what: str,
    dropped: list[str],
) -> list[Source] | None:
    """The optimizer's variables in Keras 3's order, each from the legacy
    slot of the same kind for the same model variable; None (and a line in
    `dropped`) when they do not all match."""
    arrangement, kinds = layout
    position = {slot.path: i for i, slot in enumerate(trainable)}
    by_variable: dict[str, int] = {}  # legacy weight name -> index in `trainable`
    for name, slots in legacy_names.items():
        # a name two variables share (tf.keras does not make names unique) is no key
        if len(slots) == 1 and slots[0].path in position:
            by_variable[name] = position[slots[0].path]
    found: dict[tuple[str, int], LegacyWeight] = {}
    unplaced: list[str] = []
    for weight in state:
        match = _slot_of(weight.name, kinds, by_variable)
        if match is None or match in found:
            unplaced.append(weight.name)
            continue
        found[match] = weight
    wanted = [
        (kind, i)
        for kind, i in (
            [(k, i) for i in range(len(trainable)) for k in kinds]
            if arrangement == INTERLEAVED
            else [(k, i) for k in kinds for i in range(len(trainable))]
        )
    ]
    missing = [f"{kind} of {trainable[i].path}" for kind, i in wanted if (kind, i) not in found]
    extra = [name for name in unplaced if not _unused_slot(name, kinds)]
    if missing or extra:
        detail = "; ".join(
            part
            for part in (
                f"no saved slot for {', '.join(missing[:3])}" if missing else "",
                f"no Keras 3 place for {', '.join(extra[:3])}" if extra else "",
            )
            if part
        )
        dropped.append(f"{what}: its slots do not match the model's trainable variables ({detail})")
        return None
    for (_, i), weight in found.items():
        if weight.shape != shapes.get(trainable[i].path):
            dropped.append(
                f"{what}: slot {weight.name} has shape {weight.shape}, "
                f"not that of {trainable[i].path}"
            )
            return None
    left_out = [name for name in unplaced if _unused_slot(name, kinds)]
    if left_out:
        dropped.append(
            f"{len(left_out)} optimizer slots ({', '.join(left_out[:3])}"
            f"{', ...' if len(left_out) > 3 else ''}): the Keras 3 optimizer as configured "
            "does not use them (e.g. SGD without momentum)"
        )
    return head + [FromDataset(found[key].path) for key in wanted]


def _slot_of(name: str, kinds: list[str], by_variable: dict[str, int]) -> tuple[str, int] | None:
    """(slot kind, index of the model variable) of a tf.keras optimizer
    variable named `<Optimizer>/<slot>/<variable name>` (the optimizer prefix
    is absent inside a LossScaleOptimizer)."""
    parts = name.split("/")
    for start in (1, 0):
        if len(parts) > start + 1 and parts[start] in kinds:
            variable = "/".join(parts[start + 1 :])
            if variable in by_variable:
                return parts[start], by_variable[variable]
    return None


def _unused_slot(name: str, kinds: list[str]) -> bool:
    """A tf.keras slot the Keras 3 optimizer does not create as configured:
    SGD's momentum slots when momentum is 0 (tf.keras creates them anyway)."""
    parts = name.split("/")
    return len(parts) > 2 and parts[0] == "SGD" and parts[1] == "m" and "m" not in kinds


# -- plan from a tf.keras 2.13-2.15 .keras archive

# tf.keras 2.13 saved a model's layers under this name (Keras 3 reads it too)
CHECKPOINT_DEPENDENCIES = "_layer_checkpoint_dependencies"


def plan_from_keras2_archive(config: dict, tree: Any, optimizer: dict | None) -> Plan:
    """The Keras 3 `model.weights.h5` of a `.keras` archive written by tf.keras
    2.13-2.15 (`tree`: its `weights.WeightsTree`). Layer weights keep their
    paths (tf.keras wrote the layout Keras 3 reads), except tf.keras 2.13's
    `_layer_checkpoint_dependencies` groups, which become `layers`. Metric
    state (`metrics/...`, which Keras 3 does not save) is dropped. The
    optimizer: tf.keras stores the iteration then the slots; Keras 3 the
    iteration, the learning rate, then the slots: the learning rate (from
    `optimizer`, the compile_config's) is inserted."""
    problems: list[str] = []
    dropped: list[str] = []
    if tree.format != "h5":
        return _failed(
            f"the weights are stored as {tree.format} ({tree.entry}), not model.weights.h5; "
            "re-save the model with tf.keras"
        )
    for problem in tree.problems:
        problems.append(f"{tree.entry}:{problem.path}: {problem.what}; re-save the model")
    model, root = _root(config, problems)
    if model is None:
        return _failed(*problems)

    renamed: dict[str, Any] = {}  # Keras 3 path -> Variable
    metrics: list[str] = []
    groups_213 = _tf213_groups(model, root, "")
    for variable in tree.model_variables:
        parts = variable.path.split("/")
        if parts[0] == "metrics":
            metrics.append(variable.path)
            continue
        new = variable.path
        if parts[0] == CHECKPOINT_DEPENDENCIES:
            for end in range(len(parts), 0, -1):  # the longest group tf.keras 2.13 named
                prefix = "/".join(parts[:end])
                if prefix in groups_213:
                    new = "/".join([groups_213[prefix], *parts[end:]])
                    break
        renamed[new] = variable
    if metrics:
        groups_of_metrics = sorted({"/".join(p.split("/")[:2]) for p in metrics})
        dropped.append(
            f"metric state ({len(metrics)} variables under {', '.join(groups_of_metrics)}): "
            "Keras 3 does not save metric state; the metrics restart from zero"
        )

    nodes = list(_walk(root))
    claimed: set[str] = set()
    for node in nodes:
        prefix = f"{node.group}/vars/" if node.group else "vars/"
        present = sorted(
            (p for p in renamed if p.startswith(prefix) and p[len(prefix) :].isdecimal()),
            key=lambda p: int(p[len(prefix) :]),
        )
        if node.known:
            expected = [node.own_path(i) for i in range(len(node.own))]
            if present != expected:
                where = f"layer '{node.name}' ({node.class_name})"
                kept = ", ".join(v.short for v in node.own) or "none"
                problems.append(
                    f"{where}: the archive has {len(present)} weights at {prefix}* where "
                    f"Keras 3 keeps {len(expected)} ({kept}); "
                    "use the config and weights saved together"
                )
        else:
            if node.class_name in COMPOSITE and any(
                p.startswith(node.group + "/") and not p.startswith(prefix) for p in renamed
            ):
                problems.append(
                    f"layer '{node.name}' ({node.class_name}): its weights under "
                    f"{node.group}/ are in a layout not known here"
                )
            node.own = [_Var(str(i), True) for i in range(len(present))]
        claimed.update(present)
    unclaimed = sorted(set(renamed) - claimed, key=graph_natural_key)
    if unclaimed:
        groups_left = sorted({p.rsplit("/vars/", 1)[0] for p in unclaimed})
        dropped.append(
            f"{len(unclaimed)} weights under {', '.join(groups_left[:3])}"
            f"{', ...' if len(groups_left) > 3 else ''}: no layer of config.json owns them "
            "(Keras 3 would not read them)"
        )

    datasets: list[tuple[str, Source]] = []
    for node in _save_order(root):
        for index in range(len(node.own)):
            path = node.own_path(index)
            if path in renamed:
                datasets.append((path, FromDataset(renamed[path].path)))

    optimizer_datasets: list[tuple[str, Source]] = []
    optimizer_groups: list[tuple[str, str | None]] = []
    if not problems:
        trainable = _keras3_trainable([child for _, child in root.children])
        shapes = {path: variable.shape for path, variable in renamed.items()}
        optimizer_datasets, optimizer_groups = _optimizer_from_archive(
            tree, optimizer, trainable, shapes, dropped, _mixed_float16(config)
        )
    groups, names = _groups(root, optimizer_groups)
    return Plan(
        datasets=tuple(datasets + optimizer_datasets),
        groups=groups,
        problems=tuple(problems),
        dropped=tuple(dropped),
        names=names,
    )


def _tf213_groups(model: graph.ModelGraph, node: _Node, tf_prefix: str) -> dict[str, str]:
    """tf.keras 2.12-2.13 group -> Keras 3 group, for every layer of a model.

    tf.keras 2.13 saved a model's layers from its `_layer_checkpoint_dependencies`,
    a dict listing each layer with weights twice (`layer_with_weights-<k>` and
    `layer-<i>`) and each other layer once, named by class with one counter per
    class over that list; a layer met the second time is not saved again but
    takes a name: `dense`, `dense_2` for two Dense layers (Keras 3 looks for
    `dense_1`, and reads nothing there)."""
    by_name = {child.name: child for _, child in node.children}
    layers = [layer for layer in model.layers if not layer.is_operation]
    if model.kind == graph.SEQUENTIAL:
        layers = [layer for layer in layers if layer.class_name != "InputLayer"]
    used: dict[str, int] = {}
    mapping: dict[str, str] = {}
    for layer in layers:
        child = by_name.get(layer.name)
        group = graph._unique_name(_group_name(layer), used)
        if child is None:
            continue
        if _all_slots(child, False) or not child.known:
            graph._unique_name(_group_name(layer), used)  # listed twice
        tf_group = f"{tf_prefix}{CHECKPOINT_DEPENDENCIES}/{group}"
        mapping[tf_group] = child.group
        if layer.submodel is not None:
            mapping.update(_tf213_groups(layer.submodel, child, tf_group + "/"))
    return mapping


def _index_key(name: str) -> tuple[int, int, str]:
    """Names `0`, `1`, ... in numeric order, anything else after them."""
    return (0, int(name), "") if name.isdecimal() and len(name) < 20 else (1, 0, name)


def graph_natural_key(path: str) -> list:
    return [_index_key(p) for p in path.replace("/", " / ").split()]


def _optimizer_from_archive(
    tree: Any,
    optimizer: dict | str | None,
    trainable: list[_Slot],
    shapes: dict[str, tuple[int, ...]],
    dropped: list[str],
    mixed: bool,
) -> tuple[list[tuple[str, Source]], list[tuple[str, str | None]]]:
    """tf.keras 2.13-2.15 keeps `optimizer/vars/0` the iteration, then the
    slots, built over the same trainable variables in the same layouts as
    Keras 3 (checked with tf.keras 2.15: Adam's m and v interleaved, RMSprop's
    in blocks, ...), except SGD, which creates momentum slots even without
    momentum. A LossScaleOptimizer's state is its inner optimizer's, saved both
    at `optimizer/vars` and `optimizer/inner_optimizer/vars`."""
    state = sorted(
        (v for v in tree.optimizer_variables if v.path.startswith("optimizer/vars/")),
        key=lambda v: _index_key(v.path.removeprefix("optimizer/vars/")),
    )
    if not state:
        return [], []
    what = f"the optimizer state ({len(state)} variables)"
    if [v.path for v in state] != [f"optimizer/vars/{i}" for i in range(len(state))]:
        dropped.append(f"{what}: its variables are not numbered 0..{len(state) - 1}")
        return [], []
    if optimizer is None:
        dropped.append(f"{what}: config.json has no compiled optimizer to give it to")
        return [], []
    unwrapped = _unwrap(optimizer, mixed, what, dropped)
    if unwrapped is None:
        return [], []
    class_name, config, wrapper = unwrapped
    iteration, slots_state = state[0], state[1:]
    if iteration.shape != () or np.dtype(iteration.dtype).kind not in "iu":
        dropped.append(f"{what}: optimizer/vars/0 is not an iteration count")
        return [], []
    rate = _learning_rate(config)
    if isinstance(rate, str):
        dropped.append(f"{what}: {rate}")
        return [], []
    head: list[Source] = [FromDataset(iteration.path)]
    if rate is not None:
        head.append(Value(rate, "float32"))
    layout = _slot_layout(class_name, config)
    reason = layout if isinstance(layout, str) else None
    if reason is None and (config.get("use_ema") or config.get("gradient_accumulation_steps")):
        reason = "its EMA or gradient accumulation variables are not converted"
    if reason is None and not slots_state:
        values: list[Source] = head
    elif reason is not None:
        dropped.append(f"{what}: {reason}")
        return [], []
    else:
        arrangement, kinds = layout
        tf_kinds = kinds if kinds or class_name != "SGD" else ["m"]  # tf.keras: always
        n = len(trainable)
        if len(slots_state) != n * len(tf_kinds):
            dropped.append(
                f"{what}: {len(slots_state)} slots where {len(tf_kinds)} per trainable "
                f"variable ({n}) were expected"
            )
            return [], []
        wanted = (
            [(k, i) for i in range(n) for k in range(len(tf_kinds))]
            if arrangement == INTERLEAVED
            else [(k, i) for k in range(len(tf_kinds)) for i in range(n)]
        )
        for (_, i), variable in zip(wanted, slots_state, strict=True):
            if variable.shape != shapes.get(trainable[i].path):
                dropped.append(
                    f"{what}: {variable.path} has shape {variable.shape}, "
                    f"not that of {trainable[i].path}"
                )
                return [], []
        if kinds:
            values = head + [FromDataset(v.path) for v in slots_state]
        else:
            values = head
            dropped.append(
                f"{len(slots_state)} optimizer slots (SGD momentum): the Keras 3 SGD "
                "without momentum does not use them"
            )
    return _optimizer_datasets(values, config, wrapper, dropped)


def _optimizer_datasets(
    values: list[Source], config: dict, wrapper: dict | None, dropped: list[str]
) -> tuple[list[tuple[str, Source]], list[tuple[str, str | None]]]:
    name = config.get("name") if isinstance(config.get("name"), str) else None
    if wrapper is None:
        return [(f"optimizer/vars/{i}", v) for i, v in enumerate(values)], [
            ("optimizer/vars", name)
        ]
    # Keras 3's LossScaleOptimizer: its own iteration, learning rate (0), step
    # counter and scale, then its inner optimizer's variables; the inner
    # optimizer saves them again under `inner_optimizer`
    scale = wrapper.get("initial_scale", 2.0**15)
    if not isinstance(scale, (int, float)) or isinstance(scale, bool):
        scale = 2.0**15
    # its iteration counts the steps it applied, the inner optimizer's count
    # (Keras 3.0-3.6 report it as `optimizer.iterations`; later ones the inner's)
    own: list[Source] = [
        values[0] if values else Value(0, "int64"),
        Value(0.0, "float32"),
        Value(0, "int64"),
        Value(float(scale), "float32"),
    ]
    dropped.append(
        "the loss scale and its step counter: not in the tf.keras file, so they restart "
        f"at initial_scale ({float(scale)}) and 0"
    )
    outer_name = wrapper.get("name") if isinstance(wrapper.get("name"), str) else None
    datasets = [(f"optimizer/vars/{i}", v) for i, v in enumerate(own + values)]
    datasets += [(f"optimizer/inner_optimizer/vars/{i}", v) for i, v in enumerate(values)]
    return datasets, [("optimizer/vars", outer_name), ("optimizer/inner_optimizer/vars", name)]


# -- writing

# bytes read and written at once when copying a dataset
BLOCK_BYTES = 16 * 2**20


def write(source: BinaryIO, plan: Plan, target: BinaryIO | str | os.PathLike) -> None:
    """Write the new `model.weights.h5` to `target`: the plan's groups (with
    their `name` attributes), then each dataset, copied block by block from
    `source` (seekable; memory does not grow with a weight's size) with the
    same dtype and shape, or made from its Value. Contiguous, uncompressed
    (as Keras 3 writes them) and without timestamps: the same input gives the
    same bytes. Raises ValueError for a plan with problems."""
    if plan.problems:
        raise ValueError("the plan has problems; nothing is written:\n" + "\n".join(plan.problems))
    if isinstance(target, (str, os.PathLike)):
        # through a file object too: HDF5's file-object driver lays the file out
        # otherwise than its own for a path; one way, one result
        with open(target, "w+b") as handle:
            write(source, plan, handle)
        return
    names = dict(plan.names)
    where = source.name if isinstance(getattr(source, "name", None), str) else "the weights"
    raw = io.BufferedReader(source, 2**16)  # HDF5 reads metadata in small pieces
    try:
        _write(raw, plan, names, target, where)
    finally:
        raw.detach()  # the caller's file stays open


def _write(
    raw: io.BufferedReader, plan: Plan, names: dict[str, str], target: BinaryIO, where: str
) -> None:
    try:
        src = h5py.File(HeapCheckedFile(raw, where), "r")
    except H5_ERRORS as e:
        raise ArchiveError(where, f"is not a readable HDF5 file ({e})", RESAVE) from None
    with src, h5py.File(target, "w", track_order=False) as dst:
        group_plist = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
        group_plist.set_obj_track_times(False)
        for path in plan.groups:
            h5py.h5g.create(dst.id, path.encode(), gcpl=group_plist)
            if path in names:
                dst[path].attrs["name"] = names[path]
        for path, value in plan.datasets:
            if isinstance(value, Value):
                data = np.asarray(value.value, dtype=value.dtype)
                dst.create_dataset(path, data=data, track_times=False)
                continue
            try:
                _copy(src[value.path], dst, path)
            except H5_ERRORS as e:  # damaged data: the metadata read well, the values do not
                raise ArchiveError(
                    f"{where}:{value.path}", f"cannot be read ({e})", f"it is damaged; {RESAVE}"
                ) from None


def _copy(source: h5py.Dataset, dst: h5py.File, path: str) -> None:
    if source.shape is None:
        raise ValueError("it holds no value (an empty dataspace)")
    target = dst.create_dataset(path, shape=source.shape, dtype=source.dtype, track_times=False)
    if source.shape == ():
        target[()] = source[()]
        return
    if 0 in source.shape:
        return
    for block in _blocks(source.shape, source.dtype.itemsize):
        target[block] = source[block]


def _blocks(shape: tuple[int, ...], itemsize: int) -> Iterator[tuple[slice | int, ...]]:
    """Index tuples covering an array of `shape` in row-major order, each at
    most BLOCK_BYTES (or one element)."""
    inner = math.prod(shape[1:]) * itemsize
    if inner <= BLOCK_BYTES or len(shape) == 1:
        rows = max(1, BLOCK_BYTES // max(inner, 1))
        for start in range(0, shape[0], rows):
            yield (slice(start, min(start + rows, shape[0])),)
        return
    for row in range(shape[0]):
        for rest in _blocks(shape[1:], itemsize):
            yield (row, *rest)
