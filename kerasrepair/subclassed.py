"""What a subclassed model's config says it holds, and so what its loading
builds: the layers and models of its config (constructor arguments) that the
loader builds from their own config, and the stored variables only the
model's own build creates. Shared by KR401 and KR404.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .context import Context
from .graph import FUNCTIONAL, SEQUENTIAL, SUBCLASSED, build, is_builtin, model_kind

if TYPE_CHECKING:
    from .weights import Variable

BUILD_CONFIG = "build_config"
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


@dataclass(frozen=True)
class Nested:
    """A layer or model a subclassed model holds in its config (a constructor
    argument), which the loader builds from its own config."""

    key: str  # its key in the model's config: the attribute it is assumed to be
    class_name: str
    input_shape: list | None  # the one tensor it takes, batch first; None: see `why`
    why: str = ""  # why its input shape is not known


@dataclass
class State:
    """What a subclassed model's weights and optimizer depend on when loading."""

    nested: list[Nested] = field(default_factory=list)
    # stored model variables outside every nested object's group: created only
    # when the model itself is built
    own: list[Variable] = field(default_factory=list)
    # stored optimizer variables, when the model is compiled with an optimizer
    optimizer: list[Variable] = field(default_factory=list)

    @property
    def own_groups(self) -> list[str]:
        """The groups of the own variables (`hidden`, `head`), in order; the
        model's own variables (`vars/0`) as `(the model itself)`."""
        return list(
            dict.fromkeys(
                v.path[: v.path.rindex("/vars/")] if "/vars/" in v.path else "(the model itself)"
                for v in self.own
            )
        )


def custom_subclassed(ctx: Context) -> bool:
    """A top-level model of the user's own class (not Functional, Sequential)."""
    return ctx.graph.kind == SUBCLASSED and not is_builtin(ctx.graph.module)


def state(ctx: Context) -> State:
    """The nested objects of the model's config, and the stored variables only
    the model's own build creates (the weights of a subclassed model are saved
    under its attribute names: `encoder/layers/dense/vars/0`, `hidden/vars/0`;
    an object of its config is assumed to be the attribute of its key)."""
    inner = ctx.config.get("config")
    found = State()
    if isinstance(inner, dict):
        found.nested = [
            nested for key, value in inner.items() if (nested := _nested(key, value)) is not None
        ]
    weights = ctx.weights()
    keys = {nested.key for nested in found.nested}
    found.own = [v for v in weights.model_variables if v.path.split("/", 1)[0] not in keys]
    compile_config = ctx.config.get("compile_config")
    if isinstance(compile_config, dict) and compile_config.get("optimizer"):
        found.optimizer = weights.optimizer_variables
    return found


def input_shape(found: State) -> tuple[list | None, str]:
    """The shape to build the model with, or None and why there is none."""
    if found.own:
        return None, (
            "the shapes of its own layers depend on its call, which the archive does not hold"
        )
    if not found.nested:
        return None, "its config holds no model or built layer to take the input shape from"
    first = found.nested[0]
    if first.input_shape is None:
        return None, f"the first layer or model it holds, '{first.key}', {first.why}"
    return first.input_shape, ""


def _nested(key: str, value: Any) -> Nested | None:
    """A serialized layer or model the loader builds from its own config: a
    Functional model, a Sequential one with an input, any layer with a
    `build_config`. None for anything else (a layer never built, a plain value)."""
    if not isinstance(value, dict) or not isinstance(value.get("config"), dict):
        return None
    if not isinstance(value.get("class_name"), str):
        return None
    kind = model_kind(value)
    class_name = value["class_name"]
    build_config = value.get(BUILD_CONFIG)
    if kind == FUNCTIONAL:
        graph = build(value)
        if len(graph.inputs) != 1:
            return Nested(key, class_name, None, f"takes {len(graph.inputs)} inputs")
        name = graph.inputs[0].layer
        layer = next((la for la in graph.layers if la.name == name), None)
        if layer is None or layer.class_name != "InputLayer":
            return Nested(key, class_name, None, "has an input no InputLayer describes")
        return _from_input_layer(key, class_name, layer.config)
    if kind == SEQUENTIAL:
        layers = value["config"].get("layers") or []
        first = layers[0] if layers and isinstance(layers[0], dict) else {}
        if first.get("class_name") == "InputLayer" and isinstance(first.get("config"), dict):
            return _from_input_layer(key, class_name, first["config"])
        if build_config:
            return _from_build_config(key, class_name, build_config)
        return None  # built on its first call: its weights are not restored either
    if build_config:
        return _from_build_config(key, class_name, build_config)
    return None


def _from_input_layer(key: str, class_name: str, config: dict) -> Nested:
    shape = config.get("batch_shape", config.get("batch_input_shape"))
    dtype = config.get("dtype", "float32")
    if isinstance(dtype, dict):  # a dtype policy
        dtype = (dtype.get("config") or {}).get("name", "float32")
    if dtype not in FLOAT_DTYPES:
        return Nested(
            key, class_name, None, f"takes {dtype} inputs (Keras builds from float placeholders)"
        )
    if config.get("sparse") or config.get("ragged"):
        return Nested(key, class_name, None, "takes sparse or ragged inputs")
    return _checked(key, class_name, shape)


def _from_build_config(key: str, class_name: str, build_config: Any) -> Nested:
    if not isinstance(build_config, dict) or "input_shape" not in build_config:
        return Nested(key, class_name, None, "was built with several inputs")
    return _checked(key, class_name, build_config["input_shape"])


def _checked(key: str, class_name: str, shape: Any) -> Nested:
    """One tensor's shape, batch dimension left open."""
    if not (
        isinstance(shape, list)
        and shape
        and all(d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in shape)
    ):
        return Nested(key, class_name, None, f"has no single input shape ({shape!r})")
    return Nested(key, class_name, [None, *shape[1:]])
