"""KR401: a subclassed model whose weights may silently not be restored
(keras-team/keras#20409).

Loading a subclassed model replays its `build_config` (input shapes only, no
dtypes): `{"input_shape": ...}` by calling the model on float placeholders of
that shape, `{"shapes_dict": ...}` (a `build` of its own taking several
shapes) by calling that `build` with the shapes, or `call` with placeholders.
When that does not build every layer (a call that needs a boolean mask or
integer ids used as indices; a `build` that leaves layers to their first
call), the layers stay unbuilt and their stored weights are dropped: the model
predicts with fresh random weights. The archive does not hold the code, so the
risk cannot be told from a model that loads correctly: the finding says so and
points to `verify`, which loads it. No edit of the archive can add what the
loader would need: the finding says what to change in the model's code.

A model saved without `build_config` is KR404's; weights stored in what the
model's config holds (a Functional encoder) are built from their own config
and not at risk.
"""

from __future__ import annotations

from ..context import Context
from ..findings import NEVER, WARNING, Finding, Rule
from ..subclassed import custom_subclassed, state

EXPLANATION = """\
A subclassed model (a class of your own deriving from keras.Model) is saved
with its constructor arguments and a `build_config` holding the shapes it was
built with, but no dtypes. To load it, Keras creates the model and replays
the build: with `{"input_shape": ...}` it calls the model on float
placeholders of that shape; with `{"shapes_dict": ...}` (written when the
model has a `build(self, x_shape, mask_shape)` of its own) it calls that
`build` with the shapes. If that does not build every layer, e.g.
`tf.where(inputs["mask"], ...)` on a boolean mask or an integer tensor used
as indices in `call`, or a `build` that leaves some layers to their first
call, Keras warns at most:

    Model '...' had a build config, but the model cannot be built automatically

(a `build` that returns without error gives no warning at all). The layers
stay unbuilt, the weights stored in the archive are not restored, and the
model predicts with fresh random weights (keras-team/keras#20409).

This finding is a risk, not a certainty: the archive holds no code, so it
cannot tell a call that fails on float placeholders (`tf.where` on a bool
input) from one that does not (`keras.ops.where`, which takes a float
condition). Many models it reports load correctly.
`kerasrepair verify model.keras --custom-objects yourmodule` loads the
archive with Keras and tells them apart.

Weights stored in what the model's config holds (a Functional encoder or
decoder passed to its constructor) are built from their own config and are
not at risk; a model saved without `build_config` is KR404's.

The archive cannot be repaired: the dtypes and the code the loader would
need are not in it. Change the model's code, then save it again:
  * implement `build_from_config(self, config)` (and `get_build_config`) to
    build the layers from the stored shapes;
  * or cast inside `call` (`mask = keras.ops.cast(mask, "bool")`), so that
    float placeholders work; make `build` build every layer;
  * or build the model with the functional API, which stores its inputs.
"""


RULE = Rule(
    code="KR401",
    name="unbuildable-subclassed-model",
    severity=WARNING,
    summary="A subclassed model rebuilt from shapes only: its weights may silently not load",
    explanation=EXPLANATION,
    fix=NEVER,
    breaks_in=None,
)


def detect(ctx: Context) -> list[Finding]:
    if not custom_subclassed(ctx):
        return []
    build = ctx.config.get("build_config")
    if not isinstance(build, dict):
        return []  # none: KR404's
    if "input_shape" in build:
        shapes, replayed = (
            build["input_shape"],
            "calling it on float placeholders (or its own build() with the shape)",
        )
    elif "shapes_dict" in build:
        shapes, replayed = build["shapes_dict"], "calling its build() with them"
    else:
        return []
    own = state(ctx).own
    if not own:
        return []  # every stored weight is in a model or layer built from its own config
    model = ctx.graph
    return [
        Finding(
            code=RULE.code,
            message=(
                f"subclassed model '{model.registered_name or model.class_name}' is rebuilt "
                f"from shapes alone ({shapes}), by {replayed}; if that does not build every "
                f"layer (a call that needs non-float inputs, a build that leaves layers to "
                f"their first call), Keras silently drops the weights of the layers it "
                f"leaves unbuilt ({len(own)} stored weights at risk). "
                "This may be a false alarm: the archive holds no code, and cannot tell "
                "`tf.where` on a bool input (fails) from `keras.ops.where` (loads); "
                "`kerasrepair verify` loads it and tells"
            ),
            location="/build_config",
            severity=WARNING,
            layer=model.name,
            hint="check with `kerasrepair verify model.keras --custom-objects yourmodule`; if "
            "its weights are dropped, implement build_from_config, cast inside call, build "
            "every layer in build, or use the functional API",
        )
    ]
