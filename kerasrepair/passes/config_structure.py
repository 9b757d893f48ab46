"""KR201: config.json is not shaped as Keras writes it."""

from __future__ import annotations

from .. import objects
from ..context import Context
from ..findings import ERROR, Finding, Rule

RULE = Rule(
    code=objects.CONFIG_STRUCTURE,
    name="config-structure",
    severity=ERROR,
    summary="config.json is not shaped as Keras writes it",
    explanation="""\
config.json is validated against schemas/config.schema.json, the structure Keras 3
writes and its loader reads back: a serialized object (`module`, `class_name`,
`config`, `registered_name`, `build_config`, `compile_config`); for a Functional
model, `layers` each with a `name` and `inbound_nodes` (the dict form
{"args", "kwargs"} or the legacy list form [[layer, node, tensor, kwargs]]),
`input_layers` and `output_layers` as [layer, node, tensor]; for a Sequential
model, `layers`; and the special objects Keras writes for values that are not
JSON (`__keras_tensor__`, `__numpy__`, `__tensor__`, `__lambda__`, `__bytes__`,
`__slice__`, `__ellipsis__`). A config that does not match fails to load in
every release, usually with a KeyError or TypeError far from the cause.""",
)


def detect(ctx: Context) -> list[Finding]:
    """The model's structure, and each serialized object's (from the object walk)."""
    return objects.structure_findings(ctx.config) + ctx.objects_of(RULE.code)
