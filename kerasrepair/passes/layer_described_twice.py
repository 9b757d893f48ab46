"""KR303: a layer described twice in config.json (the VAE case).

A Functional model whose outputs use a tensor *inside* a nested model
(`keras.Model(x, [encoder.get_layer("z_mean").output, ...])`) reaches that
layer at two levels, so `get_config` describes it twice: inside the nested
model and in the outer model's `layers`. Keras marks such copies with a common
`shared_object_id` so that the loader builds one object from them, but a
nested model's config is deep-copied when its `get_config` returns: when the
nested copy is written first, the mark Keras adds when it meets the outer copy
never reaches it. The loader then builds two layers, while the weights file,
written by walking the one object, holds its weights once: the copy whose
weight group is empty fails to load.

Repair (safe, config only): give every copy the `shared_object_id` Keras wrote
on one of them. The loader (3.3 and newer) then builds one layer, as the model
was, and restores its weights and the optimizer state from where they are.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import pointer
from ..context import Context
from ..edit import Edit
from ..findings import ERROR, SAFE, SOMETIMES, Change, Finding, Rule
from ..graph import Layer, ModelGraph

if TYPE_CHECKING:
    from ..weights_tree import WeightsTree

EXPLANATION = """\
A Functional model whose outputs (or layers) use a tensor from *inside* a
nested model, the usual variational autoencoder:

    encoder = keras.Model(x, [z_mean, z_log_var], name="encoder")
    vae = keras.Model(x, [encoder.get_layer("z_mean").output, decoder(encoder(x)[0])])

reaches the layer `z_mean` twice: through the call of `encoder`, and
directly. config.json describes it twice, inside `encoder` and in the outer
model's `layers`. The weights file is written by walking the model's layers
and holds each layer object once, under the first path met
(`layers/functional/layers/dense_1`). Keras marks both descriptions with a
common `shared_object_id` so that the loader builds one object from them,
but the description inside the nested model is written first and then
copied (a Functional model's `get_config` returns a deep copy), so the mark
never reaches it. Loading builds two `z_mean` layers and finds no weights for
the second one, in every Keras release from 3.3 on:

    ValueError: A total of 1 objects could not be loaded. Example error message
    for object <Dense name=z_mean, built=True>:
    Layer 'z_mean' expected 2 variables, but received 0 variables during
    loading. Expected: ['kernel', 'bias']

and, as the second layer adds variables the optimizer tracks:

    UserWarning: Skipping variable loading for optimizer 'adam', because it
    has 22 variables whereas the saved optimizer has 18 variables.

Fix (safe, config only): kerasrepair gives every description of the layer
the `shared_object_id` Keras wrote on one of them, after checking that they
describe the same layer (same class, same configuration) and that the weights
file holds its weights once. The loader then builds one layer, the model has
its original structure, and its weights and optimizer state are restored
where they are stored: predictions are identical, model.weights.h5 is
untouched. When no description carries the mark, or the descriptions differ,
the finding stays without a fix.

Saving the loaded model again writes the same broken archive. Build the
outer model from the nested model's outputs instead of its inner tensors,
e.g. `z_mean, z_log_var = encoder(x)` and `keras.Model(x, [z_mean, ...])`
rather than `encoder.get_layer("z_mean").output`.
"""


RULE = Rule(
    code="KR303",
    name="layer-described-twice",
    severity=ERROR,
    summary="A layer described twice in config.json (the VAE case): one copy finds no weights",
    explanation=EXPLANATION,
    fix=SOMETIMES,
    breaks_in=None,
)

SHARED_OBJECT_ID = "shared_object_id"


@dataclass
class DescribedTwice:
    """One layer object described several times in config.json."""

    name: str
    copies: list[Layer]  # in config order, the outermost first
    stored: Layer  # the copy whose weight group holds the weights
    empty: list[Layer]  # the copies whose weight group is empty
    variables: int  # variables stored for the layer
    shared_object_id: int | None  # the mark to give every copy; None: no safe repair
    problem: str  # why there is no safe repair ("" when there is one)
    nested_model: ModelGraph | None  # the nested model that lists a copy


def described_twice(
    config: dict[str, Any], model: ModelGraph, read_weights: Callable[[], WeightsTree]
) -> list[DescribedTwice]:
    """Layers described at several places whose copies the loader builds as
    separate layers, one of which finds an empty weight group.

    Copies are the layers (not nested models) of the same name and class that
    have a weight group; the signature of one object written once is one copy
    with stored weights and another whose group is empty. Copies that already
    share one `shared_object_id` are built as one layer and not reported.
    The weights are read (`read_weights()`) only when a name is met twice.
    """
    copies: dict[tuple[str, str], list[Layer]] = {}
    owners: dict[str, ModelGraph] = {}  # pointer of a copy -> the model that lists it
    for owner in _models(model):
        for layer in owner.layers:
            owners[layer.pointer] = owner
            if layer.weights_path and layer.submodel is None:
                copies.setdefault((layer.name, layer.class_name), []).append(layer)
    if all(len(layers) < 2 for layers in copies.values()):
        return []
    weights = read_weights()
    if weights.pickled:
        return []  # variables kerasrepair does not read: empty groups cannot be told
    found = []
    for (name, _), layers in copies.items():
        stored = [layer for layer in layers if weights.params_under(layer.weights_path)]
        empty = [layer for layer in layers if not weights.params_under(layer.weights_path)]
        if len(layers) < 2 or not stored or not empty:
            continue
        serialized = [pointer.get(config, layer.pointer) for layer in layers]
        marks = [s.get(SHARED_OBJECT_ID) for s in serialized]
        if None not in marks and len({json.dumps(mark) for mark in marks}) == 1:
            continue  # already one object for the loader
        given = {mark for mark in marks if _is_mark(mark)}
        problem = ""
        if any(mark is not None and not _is_mark(mark) for mark in marks):
            problem = f"a copy carries a {SHARED_OBJECT_ID} that is not a number"
        elif len(stored) > 1:
            problem = "several copies have weights stored: they are separate layers"
        elif len({_comparable(s.get("config")) for s in serialized}) > 1:
            problem = "the copies are configured differently"
        elif not given:
            problem = f"no copy carries a {SHARED_OBJECT_ID} to share"
        elif len(given) > 1:
            problem = f"the copies carry different {SHARED_OBJECT_ID}s"
        prefix = stored[0].weights_path + "/"
        found.append(
            DescribedTwice(
                name=name,
                copies=layers,
                stored=stored[0],
                empty=empty,
                variables=sum(1 for v in weights.model_variables if v.path.startswith(prefix)),
                shared_object_id=None if problem else given.pop(),
                problem=problem,
                nested_model=next(
                    (owners[c.pointer] for c in layers if owners[c.pointer] is not model), None
                ),
            )
        )
    return found


def message(found: DescribedTwice, weights: WeightsTree) -> str:
    """What goes wrong when the archive is loaded (also `inspect`'s warning)."""
    text = (
        f"layer '{found.name}' is described {len(found.copies)} times in config.json "
        f"({', '.join(layer.pointer for layer in found.copies)}); its weights are stored "
        f"once, at '{found.stored.weights_path}', so the loader, which builds a layer per "
        f"description, finds none at '{found.empty[0].weights_path}': \"Layer "
        f"'{found.name}' expected {found.variables} variables, but received 0 variables "
        'during loading"'
    )
    optimizer = len(weights.optimizer_variables)
    if optimizer:
        text += (
            f"; the {optimizer} optimizer variables are not restored either (the loader's "
            "optimizer also tracks the extra layer's variables)"
        )
    return text


def hint(found: DescribedTwice) -> str:
    """What to change in the code that built the model."""
    nested = found.nested_model
    if nested is None or nested.name is None:
        return "build the outer model from the nested model's outputs, not its inner layers"
    outputs = [ref.layer for ref in nested.outputs]
    use = (
        f"`{nested.name}(inputs)[{outputs.index(found.name)}]`"
        if found.name in outputs and len(outputs) > 1
        else f"`{nested.name}(inputs)`"
        if found.name in outputs
        else f"an output of '{nested.name}' (add '{found.name}' to its outputs)"
    )
    return (
        f"use {use} instead of `{nested.name}.get_layer('{found.name}').output` "
        "when building the outer model, then save it again"
    )


def detect(ctx: Context) -> list[Finding]:
    findings = []
    for found in described_twice(ctx.config, ctx.graph, ctx.weights):
        text = message(found, ctx.weights())
        if found.problem:
            text += f"; not repaired: {found.problem}"
        findings.append(
            Finding(
                code=RULE.code,
                message=text,
                location=found.empty[0].pointer,
                layer=found.name,
                fix=SAFE if found.shared_object_id is not None else None,
                hint=hint(found),
            )
        )
    return findings


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    chosen = {finding.location for finding in findings}
    changes = []
    for found in described_twice(ctx.config, ctx.graph, ctx.weights):
        if found.empty[0].pointer not in chosen:
            continue
        for layer in found.copies:
            serialized = pointer.get(edit.config, layer.pointer)
            if serialized.get(SHARED_OBJECT_ID) == found.shared_object_id:
                continue
            serialized[SHARED_OBJECT_ID] = found.shared_object_id
            changes.append(
                Change(
                    RULE.code,
                    f"{layer.pointer}/{SHARED_OBJECT_ID}",
                    f"marked this description of '{found.name}' as the same object as the "
                    f"others ({SHARED_OBJECT_ID} {found.shared_object_id}): the loader builds "
                    f"one layer and restores its weights from '{found.stored.weights_path}'",
                )
            )
    return changes


def _models(model: ModelGraph):
    """This model and every nested model that lists layers, depth first."""
    yield model
    for layer in model.layers:
        if layer.submodel is not None:
            yield from _models(layer.submodel)


def _is_mark(value: Any) -> bool:
    """A `shared_object_id` as Keras writes it: the `id()` of the object."""
    return isinstance(value, int) and not isinstance(value, bool)


def _comparable(value: Any) -> str:
    """A layer's config as text, without the `shared_object_id`s Keras adds to
    the parts (dtype policy, initializers) it met before."""

    def strip(item):
        if isinstance(item, dict):
            return {k: strip(v) for k, v in item.items() if k != SHARED_OBJECT_ID}
        if isinstance(item, list):
            return [strip(v) for v in item]
        return item

    return json.dumps(strip(value), sort_keys=True)
