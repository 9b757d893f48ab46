"""A typed view of `config.json`: models, layers, call nodes, weight paths.

Functional and Sequential models list their layers; each Functional layer has
`inbound_nodes`, one per call, in the dict form Keras 3 writes
(`{"args": [...keras tensors...], "kwargs": {...}}`) or the legacy list form
(`[["dense", 0, 0, {}], ...]`). A subclassed model's config holds only its
constructor arguments, so its layers are not known from the config.

Weight paths mirror Keras's `saving_lib`: a model's layers are saved under
`layers/<class name in snake case>` with a counter per class in
`model.layers` order (`dense`, `dense_1`, ...), not under the layer names.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

FUNCTIONAL = "functional"
SEQUENTIAL = "sequential"
SUBCLASSED = "subclassed"


# `keras.ops` calls in a Functional graph are serialized as operations of these
# modules (not layers), which the loader imports by module name
OPERATIONS = "keras.src.ops."


def is_builtin(module: str | None) -> bool:
    """Whether a serialized object is Keras's own: its module is `keras` or
    under it. Without a module (configs written before Keras 3 named it) the
    class is looked up among Keras's own, so it counts as built in."""
    return module is None or module == "keras" or str(module).startswith("keras.")


@dataclass(frozen=True)
class TensorRef:
    """A tensor in a Functional graph, as Keras's `keras_history` names it:
    output `tensor_index` of the node `node_index` of layer `layer`."""

    layer: str
    node_index: int
    tensor_index: int


@dataclass
class Node:
    """One call of a layer (Keras's node): the tensors it was called on."""

    inputs: list[TensorRef]
    form: str  # "dict" (Keras 3) or "list" (legacy)
    pointer: str  # JSON pointer of the node in config.json


@dataclass
class Layer:
    """A layer of a model's config: its calls, and where Keras stores its weights."""

    name: str
    class_name: str
    module: str | None
    registered_name: str | None
    pointer: str  # JSON pointer of the layer in config.json
    config: dict[str, Any] = field(repr=False)
    nodes: list[Node] = field(default_factory=list)
    weights_path: str | None = None  # e.g. "layers/dense_1"
    submodel: ModelGraph | None = None

    @property
    def calls(self) -> int:
        return len(self.nodes)

    @property
    def nodes_before_calls(self) -> int:
        """Nodes a layer has before it is called: an Input's own, a Functional
        model's node linking its inputs to its outputs. Its first call is the
        node at this index."""
        if self.class_name == "InputLayer":
            return 1
        return 1 if self.submodel is not None and self.submodel.kind == FUNCTIONAL else 0

    @property
    def is_operation(self) -> bool:
        """A `keras.ops` function in a Functional graph, not a layer: it is not
        in `model.layers` and takes no weight-group name."""
        return (self.module or "").startswith(OPERATIONS)


@dataclass
class ModelGraph:
    name: str | None
    class_name: str
    module: str | None
    registered_name: str | None
    kind: str  # FUNCTIONAL, SEQUENTIAL or SUBCLASSED
    pointer: str
    layers: list[Layer] = field(default_factory=list)
    inputs: list[TensorRef] = field(default_factory=list)
    outputs: list[TensorRef] = field(default_factory=list)

    def models(self):
        """This model and every nested model, depth first."""
        stack = [self]
        while stack:
            model = stack.pop()
            yield model
            nested = [layer.submodel for layer in model.layers if layer.submodel is not None]
            stack.extend(reversed(nested))

    def functional_models(self):
        """This model and every nested model that is Functional, depth first."""
        return (model for model in self.models() if model.kind == FUNCTIONAL)

    def walk(self):
        """Every layer, nested models' layers included, depth first."""
        stack = list(reversed(self.layers))
        while stack:
            layer = stack.pop()
            yield layer
            if layer.submodel is not None:
                stack.extend(reversed(layer.submodel.layers))


def build(config: dict[str, Any]) -> ModelGraph:
    """The graph of a serialized model (the whole `config.json`). Any JSON
    value may stand anywhere: what is not as Keras writes it is left out
    (the structure rule, KR201, reports it). Nested models nest as deep as the
    JSON may (`Limits.max_json_depth`: each level of a nested model is three
    of JSON), which bounds the recursion of `_model`."""
    return _model(config, pointer="", weights_prefix="")


def _text(value: Any) -> str | None:
    """A string of the config, or None for anything else (a `module` that is a number)."""
    return value if isinstance(value, str) else None


def model_kind(serialized: dict[str, Any]) -> str:
    inner = serialized.get("config")
    if isinstance(inner, dict) and isinstance(inner.get("layers"), list):
        if "input_layers" in inner or "output_layers" in inner:
            return FUNCTIONAL
        return SEQUENTIAL
    return SUBCLASSED


@functools.lru_cache(maxsize=1024)  # a model has a few dozen class names
def to_snake_case(name: str) -> str:
    """Keras's `naming.to_snake_case`, which names weight groups."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _model(serialized: dict[str, Any], pointer: str, weights_prefix: str) -> ModelGraph:
    inner = serialized.get("config")
    inner = inner if isinstance(inner, dict) else {}
    kind = model_kind(serialized)
    model = ModelGraph(
        name=_text(inner.get("name")),
        class_name=str(serialized.get("class_name")),
        module=_text(serialized.get("module")),
        registered_name=_text(serialized.get("registered_name")),
        kind=kind,
        pointer=pointer,
    )
    if kind == SUBCLASSED:
        return model
    used_names: dict[str, int] = {}
    for index, layer_config in enumerate(inner["layers"]):
        if not isinstance(layer_config, dict):
            continue
        layer = _layer(layer_config, f"{pointer}/config/layers/{index}")
        if not layer.is_operation:
            group = _unique_name(to_snake_case(layer.class_name), used_names)
            layer.weights_path = f"{weights_prefix}layers/{group}"
            if model_kind(layer_config) != SUBCLASSED:
                layer.submodel = _model(layer_config, layer.pointer, layer.weights_path + "/")
        model.layers.append(layer)
    if kind == SEQUENTIAL:
        _chain_sequential(model)
    else:
        model.inputs = _tensor_refs(inner.get("input_layers"))
        model.outputs = _tensor_refs(inner.get("output_layers"))
    return model


def _layer(serialized: dict[str, Any], pointer: str) -> Layer:
    inner = serialized.get("config")
    inner = inner if isinstance(inner, dict) else {}
    name = serialized.get("name", inner.get("name"))
    layer = Layer(
        name=str(name),
        class_name=str(serialized.get("class_name")),
        module=_text(serialized.get("module")),
        registered_name=_text(serialized.get("registered_name")),
        pointer=pointer,
        config=inner,
    )
    nodes = serialized.get("inbound_nodes")
    if isinstance(nodes, list):
        for index, node in enumerate(nodes):
            node_pointer = f"{pointer}/inbound_nodes/{index}"
            if isinstance(node, dict):
                layer.nodes.append(Node(keras_tensor_refs(node), "dict", node_pointer))
            elif isinstance(node, list):
                layer.nodes.append(Node(_tensor_refs(node), "list", node_pointer))
    return layer


def _unique_name(name: str, used_names: dict[str, int]) -> str:
    """Keras's `saving_lib._get_unique_name`."""
    if name in used_names:
        used_names[name] += 1
        return f"{name}_{used_names[name]}"
    used_names[name] = 0
    return name


def _chain_sequential(model: ModelGraph) -> None:
    """A Sequential model calls each layer once, on the previous layer's output."""
    previous = None
    for layer in model.layers:
        if layer.class_name == "InputLayer":
            previous = TensorRef(layer.name, 0, 0)
            model.inputs = [previous]
            continue
        inputs = [previous] if previous else []
        layer.nodes = [Node(inputs, "sequential", layer.pointer)]
        previous = TensorRef(layer.name, 0, 0)
    model.outputs = [previous] if previous else []


def keras_layer_order(model: ModelGraph) -> list[str]:
    """The order of `model.layers` that Keras gives a Functional model it
    builds: `map_graph` in keras/src/ops/function.py (the same in every Keras
    3 release). Layers go by depth, deepest (nearest the inputs) first, ties in
    the order a depth-first walk from the outputs first meets them. Keras saves
    config.json and names the weight groups in this order, so in an archive it
    saved the config lists the layers in it; a repair that changes the wiring
    can change it. Layers no output depends on come last, in config order.
    (Keras visits tensors in keyword arguments sorted by key; here they are
    visited in saved order.)
    """
    by_name = {layer.name: layer for layer in model.layers}

    def parents(node: tuple[str, int]) -> list[tuple[str, int]]:
        layer = by_name.get(node[0])
        call = node[1] - layer.nodes_before_calls if layer else -1
        if layer is None or not 0 <= call < len(layer.nodes):
            return []  # an Input's own node, or a reference nothing in the config makes
        return [(ref.layer, ref.node_index) for ref in layer.nodes[call].inputs]

    # `_build_map`: the nodes in post-order of a walk from each output, and
    # where each layer was first met
    ordered: list[tuple[str, int]] = []
    first_met: dict[str, int] = {}
    finished: set[tuple[str, int]] = set()
    for output in model.outputs:
        start = (output.layer, output.node_index)
        if start in finished:
            continue
        first_met.setdefault(start[0], len(first_met))
        stack = [(start, iter(parents(start)))]
        on_stack = {start}
        while stack:
            node, pending = stack[-1]
            parent = next(pending, None)
            if parent is None:
                stack.pop()
                on_stack.discard(node)
                finished.add(node)
                ordered.append(node)
            elif parent not in finished and parent not in on_stack:  # Keras rejects cycles
                first_met.setdefault(parent[0], len(first_met))
                stack.append((parent, iter(parents(parent))))
                on_stack.add(parent)

    # depths, from the outputs back: a shared layer takes its deepest call's
    node_depth: dict[tuple[str, int], int] = {}
    layer_depth: dict[str, int] = {}
    for node in reversed(ordered):
        depth = max(node_depth.setdefault(node, 0), layer_depth.get(node[0], 0))
        layer_depth[node[0]] = node_depth[node] = depth
        for parent in parents(node):
            node_depth[parent] = max(depth + 1, node_depth.get(parent, 0))
    for ref in model.inputs:  # inputs no output depends on
        if ref.layer not in layer_depth:
            layer_depth[ref.layer] = 0
            first_met[ref.layer] = -1

    reached = sorted(layer_depth, key=lambda name: (-layer_depth[name], first_met[name]))
    reached = [name for name in reached if name in by_name]
    return reached + [layer.name for layer in model.layers if layer.name not in layer_depth]


def keras_tensor_refs(value: Any) -> list[TensorRef]:
    """Every `__keras_tensor__` in a dict-form node, in order."""
    return [_ref(history) for history in _keras_histories(value)]


def tensor_histories(node: Any) -> list[list]:
    """The `[layer, node_index, tensor_index, ...]` lists of a call node, in
    either form, in the order of its `Node.inputs`: edit them in place to
    rewire the call."""
    return list(_keras_histories(node) if isinstance(node, dict) else _legacy_histories(node))


def _keras_histories(value: Any):
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") == "__keras_tensor__":
                tensor = item.get("config")
                history = tensor.get("keras_history") if isinstance(tensor, dict) else None
                if _ref(history):
                    yield history
                continue
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))


def _tensor_refs(value: Any) -> list[TensorRef]:
    """Every `[layer_name, node_index, tensor_index, ...]` in a legacy structure."""
    return [_ref(history) for history in _legacy_histories(value)]


def _legacy_histories(value: Any):
    stack = [value]
    while stack:
        item = stack.pop()
        if _ref(item):
            yield item
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))


def _ref(value: Any) -> TensorRef | None:
    if (
        isinstance(value, list)
        and len(value) >= 3
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and isinstance(value[2], int)
    ):
        return TensorRef(value[0], value[1], value[2])
    return None


def is_tensor_triple(value: Any) -> bool:
    """`[layer_name, node_index, tensor_index]`: one tensor of `input_layers` /
    `output_layers` (as Keras 3.11+ write a single one, bare)."""
    return (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], str)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value[1:])
    )
