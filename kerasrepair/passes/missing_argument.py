"""KR204: an argument the target Keras release requires is not saved."""

from __future__ import annotations

from .. import objects
from ..context import Context
from ..findings import ERROR, Finding, Rule

RULE = Rule(
    code=objects.MISSING_ARGUMENT,
    name="missing-argument",
    severity=ERROR,
    summary="An argument the target Keras release requires is not saved",
    explanation="""\
A built-in class whose constructor requires an argument (e.g. Dense's `units`)
cannot be rebuilt from a config that lacks it: the load fails with
`TypeError: __init__() missing 1 required positional argument`. It happens with
hand-edited configs and with arguments a release made mandatory.""",
)


def detect(ctx: Context) -> list[Finding]:
    return ctx.objects_of(RULE.code)  # found by the one walk of `objects`
