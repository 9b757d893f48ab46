"""KR205: a Keras class the target release does not have."""

from __future__ import annotations

from .. import objects
from ..context import Context
from ..findings import ERROR, Finding, Rule

RULE = Rule(
    code=objects.UNKNOWN_CLASS,
    name="unknown-class",
    severity=ERROR,
    summary="A Keras class the target release does not have",
    explanation="""\
The loader finds a built-in class by its exported name (`module.class_name`, e.g.
`keras.DTypePolicy`) or, failing that, in the module the config names. A class
that appeared in a later release is unknown to an earlier one:

    TypeError: Could not locate class 'DTypePolicy'

(archives saved by Keras 3.6 and newer describe each layer's dtype policy as a
`DTypePolicy` object, which Keras 3.0.0 cannot find; 3.0.5 can). Load the archive with a
release the finding names.""",
)


def detect(ctx: Context) -> list[Finding]:
    return ctx.objects_of(RULE.code)  # found by the one walk of `objects`
