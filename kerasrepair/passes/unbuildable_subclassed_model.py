"""KR401: a subclassed model whose weights may silently not be restored
(keras-team/keras#20409).

Loading a subclassed model replays its `build_config` (input shapes only, no
dtypes) by calling the model on float placeholders. When its `call` needs
other inputs (a boolean mask, integer ids used as indices), Keras warns that
the model "cannot be built automatically", leaves its layers unbuilt, and the
stored weights are dropped: the model predicts with fresh random weights. No
edit of the archive can add the dtypes the loader would need, so this pass
reports the risk and says what to change in the model's code.
"""

from __future__ import annotations

from ..context import Context
from ..findings import NEVER, WARNING, Finding, Rule
from ..graph import SUBCLASSED, is_builtin

EXPLANATION = """\
A subclassed model (a class of your own deriving from keras.Model) is saved
with its constructor arguments and a `build_config` holding the input shapes
it was built with, but no dtypes. To load it, Keras creates the model and calls
`build()` with float placeholders of those shapes. If `call` needs anything
else, e.g. `keras.ops.where(inputs["mask"], ...)` on a boolean mask or an
integer tensor used as indices, that build fails and Keras only warns:

    Model '...' had a build config, but the model cannot be built automatically

The layers stay unbuilt, the weights stored in the archive are not restored,
and the model predicts with fresh random weights (keras-team/keras#20409).

The archive cannot be repaired: the dtypes the loader would need are not in
it. Change the model's code, then save it again:
  * implement `build_from_config(self, config)` (and `get_build_config`) to
    build the layers from the stored shapes;
  * or cast inside `call` (`mask = keras.ops.cast(mask, "bool")`), so that
    float placeholders work;
  * or build the model with the functional API, which stores its inputs.
`kerasrepair verify model.keras --custom-objects yourmodule` tells whether
the weights of this archive are restored.
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
    model = ctx.graph
    config = ctx.config
    build = config.get("build_config")
    if model.kind != SUBCLASSED or is_builtin(model.module):
        return []
    if not isinstance(build, dict) or "input_shape" not in build:
        return []
    stored = ctx.weights().model_variables
    if not stored:
        return []
    return [
        Finding(
            code=RULE.code,
            message=(
                f"subclassed model '{model.registered_name or model.class_name}' is rebuilt "
                f"from input shapes alone ({build['input_shape']}); if its call needs "
                f"non-float inputs, Keras cannot build it and silently drops its "
                f"{len(stored)} stored weights"
            ),
            location="/build_config",
            severity=WARNING,
            layer=model.name,
            hint="implement build_from_config, cast inside call, or use the functional "
            "API; check with `kerasrepair verify`",
        )
    ]
