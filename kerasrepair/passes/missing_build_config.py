"""KR404: a subclassed model saved unbuilt, without `build_config` (the keras.io VAE).

A model of one's own class that was never called (a VAE trained by a
`train_step` that calls only its encoder and decoder) is saved without a
`build_config`. Loading it, Keras creates it and compiles it, but builds
neither it nor its optimizer: the optimizer variables stored in the archive
are skipped ("Skipping variable loading for optimizer 'adam', because it has
2 variables whereas the saved optimizer has 22 variables"), and the layers the
model creates in its own `__init__` stay unbuilt, their stored weights
silently not restored.

Repair (safe, config only), when the archive tells the input shape: add a
top-level `build_config` with it. What the model holds as arguments of its
config (a Functional encoder, a Sequential, a layer with a `build_config`) is
built from its own config when loading, whatever the top-level build does; when
every stored weight of the model belongs to those, the input shape is that of
the first of them, and the model's build cannot change which weights load. The
loader then builds the model, builds the optimizer and restores it: iteration
count and slots as saved.

What the model holds, and which weights only its own build creates, is read
by `subclassed.state` (shared with KR401).
"""

from __future__ import annotations

from ..context import Context
from ..edit import Edit
from ..findings import ERROR, SAFE, SOMETIMES, Change, Finding, Rule
from ..subclassed import BUILD_CONFIG, custom_subclassed, input_shape, state

EXPLANATION = """\
A subclassed model (a class of your own deriving from keras.Model) records
the shapes it was built with in config.json, under `build_config`. A model
that was never called has none: the keras.io variational autoencoder, whose
`train_step` calls its encoder and decoder but never the VAE itself, is saved
unbuilt ("You are saving a model that has not yet been built"). Loading it,
every Keras 3 release creates the model, compiles it and, as the model is not
built, leaves its optimizer unbuilt; the optimizer state stored in the archive
is then skipped:

    UserWarning: Skipping variable loading for optimizer 'adam', because it
    has 2 variables whereas the saved optimizer has 22 variables.

The iteration count restarts at 0 and Adam's moments are fresh: training
resumes as from scratch. Layers the model creates in its `__init__` stay
unbuilt too, and their stored weights are skipped without a word: the model
predicts with fresh weights once called. What the model takes as
constructor arguments (an encoder and a decoder serialized in its config) is
built from its own config, and its weights are restored.

Fix (safe, config only): when every weight the archive stores for the model
belongs to what its config holds (the encoder and the decoder), kerasrepair
adds a top-level `build_config` with the input shape of the first of them
(the encoder's input, batch dimension left open), e.g.

    "build_config": {"input_shape": [null, 28, 28, 1]}

The loader then builds the model and its optimizer, and restores the
optimizer variables: iteration count and every slot as saved. The weights
are untouched and were restored before; predictions are unchanged. (Keras
marks the model built even when its `call` does not take that shape, as a
model without `call` does: the optimizer is restored, and Keras warns that
the model "cannot be built automatically".)

When the model's own layers hold weights (their shapes depend on its
`call`, which the archive does not hold), or the first nested model does not
take one float tensor, there is no safe fix. Call the model once on a batch
before saving (`model(x[:1])`), or give it `get_build_config` and
`build_from_config`, and save it again. `kerasrepair verify model.keras
--custom-objects yourmodule` shows what a load restores.
"""


RULE = Rule(
    code="KR404",
    name="missing-build-config",
    severity=ERROR,
    summary="A subclassed model saved unbuilt: its optimizer state (and its own "
    "layers' weights) are not restored",
    explanation=EXPLANATION,
    fix=SOMETIMES,
    breaks_in=None,
)


def detect(ctx: Context) -> list[Finding]:
    if not custom_subclassed(ctx) or ctx.config.get(BUILD_CONFIG):
        return []
    found = state(ctx)
    if not found.own and not found.optimizer:
        return []  # nothing the model's build would restore
    model = ctx.graph
    name = model.registered_name or model.class_name
    lost = []
    if found.optimizer:
        lost.append(
            f"its optimizer is not built, and the {len(found.optimizer)} optimizer "
            "variables stored (iteration count, slots) are skipped"
        )
    if found.own:
        groups = ", ".join(f"'{group}'" for group in found.own_groups)
        lost.append(
            f"its own layers ({groups}) stay unbuilt and their {len(found.own)} stored "
            "weights are silently not restored"
        )
    shape, why = input_shape(found)
    message = f"subclassed model '{name}' was saved unbuilt (no build_config): when loading, " + (
        "; ".join(lost)
    )
    if shape is not None:
        message += (
            f"; the input shape is that of '{found.nested[0].key}', {_shape_text(shape)}: "
            "adding a build_config with it restores them"
        )
        return [
            Finding(
                code=RULE.code,
                message=message,
                location=f"/{BUILD_CONFIG}",
                severity=ERROR,
                layer=model.name,
                fix=SAFE,
            )
        ]
    return [
        Finding(
            code=RULE.code,
            message=f"{message}; no repair: the input shape cannot be read from the archive, "
            f"as {why}",
            location=f"/{BUILD_CONFIG}",
            severity=ERROR,
            layer=model.name,
            hint="call the model once on a batch before saving (`model(x[:1])`), or implement "
            "get_build_config and build_from_config, and save it again",
        )
    ]


def apply(ctx: Context, edit: Edit, findings: list[Finding]) -> list[Change]:
    found = state(ctx)
    shape, _ = input_shape(found)
    if shape is None:
        return []
    first = found.nested[0]
    build_config = {"input_shape": shape}
    # where Keras writes it: after `registered_name`, before `compile_config`
    items = list(edit.config.items())
    edit.config.clear()
    for key, value in items:
        if key == "compile_config":
            edit.config[BUILD_CONFIG] = build_config
        edit.config[key] = value
    edit.config.setdefault(BUILD_CONFIG, build_config)
    name = ctx.graph.registered_name or ctx.graph.class_name
    return [
        Change(
            RULE.code,
            f"/{BUILD_CONFIG}",
            f"added the build_config of '{name}': input shape {_shape_text(shape)}, that of "
            f"'{first.key}' ({first.class_name}), the first model it holds; the loader builds "
            "it and restores its optimizer",
        )
    ]


def _shape_text(shape: list) -> str:
    return "[" + ", ".join("null" if d is None else str(d) for d in shape) + "]"
