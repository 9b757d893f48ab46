"""KR902: weights saved as pickled object arrays in model.weights.npz."""

from __future__ import annotations

from ..context import Context
from ..findings import NEVER, WARNING, Finding, Rule

RULE = Rule(
    code="KR902",
    name="pickled-weights",
    severity=WARNING,
    summary="model.weights.npz holds pickled object arrays: never unpickled, not described",
    explanation="""\
Keras can save the weights as `model.weights.npz`, in which each layer's
variables are a pickled object array. Unpickling runs code chosen by whoever
wrote the file, so kerasrepair never does: their variables are not described,
and parameter counts are unknown. Loading such an archive in Keras unpickles
them (`allow_pickle=True`): load it only if you trust its source, and prefer
`model.weights.h5` (Keras's default) when you save.""",
    fix=NEVER,
    checked=False,  # inspect shows it
)


def detect(ctx: Context) -> list[Finding]:
    weights = ctx.weights()
    if not weights.pickled:
        return []
    return [
        Finding(
            code=RULE.code,
            message=f"{len(weights.pickled)} entries of {weights.entry} are pickled object "
            "arrays; kerasrepair never unpickles, so their variables are not described",
            location=str(weights.entry),
            severity=WARNING,
            hint="load it only if you trust its source; save with model.weights.h5",
        )
    ]
