"""KR208: an activation the target Keras release does not have."""

from __future__ import annotations

from .. import objects
from ..context import Context
from ..findings import ERROR, Finding, Rule

RULE = Rule(
    code=objects.UNKNOWN_ACTIVATION,
    name="unknown-activation",
    severity=ERROR,
    summary="An activation the target Keras release does not have",
    explanation="""\
Built-in activations are saved by name (`"activation": "celu"`) and looked up
with `keras.activations.get` when the layer is rebuilt. A name added in a later
release (celu, glu, hard_tanh, squareplus ... in 3.7; hard_silu in 3.0.5) is
unknown to an earlier one, and the load fails:

    ValueError: Could not interpret activation function identifier: 'celu'

Only names the release that saved the archive has are checked (a name neither
release has is a custom activation, registered by the user's code). Load the
archive with the release the finding names.""",
)


def detect(ctx: Context) -> list[Finding]:
    return ctx.objects_of(RULE.code)  # found by the one walk of `objects`
