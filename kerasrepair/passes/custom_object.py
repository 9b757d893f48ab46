"""KR206: a class that is not Keras's: the loader must be given it."""

from __future__ import annotations

from .. import objects, pointer, security
from ..context import Context
from ..findings import NOTE, Finding, Rule

RULE = Rule(
    code=objects.CUSTOM_OBJECT,
    name="custom-object",
    severity=NOTE,
    summary="A class that is not Keras's: the loader must be given it",
    explanation="""\
A class or function from outside Keras (a custom layer, a registered function,
a subclassed model, a class from keras_hub) is not an error of the archive, but
`load_model` can only rebuild it when its code is imported first: with
`@keras.saving.register_keras_serializable()` on the class and its module
imported, or with `custom_objects={"Name": Class}`. The finding names the
module and registered name the loader will look for. A module that holds no
model code (`os`, `builtins.eval`, `subprocess`) is KR904's error instead.""",
)


def detect(ctx: Context) -> list[Finding]:
    # found by the one walk of `objects`; what KR904 reports is not a custom object
    return [f for f in ctx.objects_of(RULE.code) if not _foreign(ctx.config, f.location)]


def _foreign(config, location: str) -> bool:
    try:
        obj = pointer.get(config, location)
    except (LookupError, ValueError, TypeError):
        return False
    return isinstance(obj, dict) and bool(security.foreign_fields(obj))
