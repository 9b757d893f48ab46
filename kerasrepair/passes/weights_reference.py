"""KR901: a weights entry that points outside itself, or part of it that cannot be read."""

from __future__ import annotations

from ..context import Context
from ..findings import NEVER, WARNING, Finding, Rule

RULE = Rule(
    code="KR901",
    name="weights-reference",
    severity=WARNING,
    summary="The weights file links outside itself (HDF5 links, external storage): not followed",
    explanation="""\
An HDF5 file can hold soft links, external links to other files, datasets
whose data lives in external files, and virtual datasets. Keras never writes
any of them; h5py follows them when Keras loads the weights, so a crafted
archive can make the loader read files of the machine it runs on.
kerasrepair lists them and never follows them. An `.npy` member of
`model.weights.npz` whose header cannot be read is reported here too.
Re-save the model from its code, or remove the links.""",
    fix=NEVER,
    checked=False,  # inspect shows it
)


def detect(ctx: Context) -> list[Finding]:
    weights = ctx.weights()
    return [
        Finding(
            code=RULE.code,
            message=f"{problem.path}: {problem.what}",
            location=f"{weights.entry}:{problem.path}",
            severity=WARNING,
            hint="Keras never writes this: re-save the model, and load this file only "
            "if you trust its source",
        )
        for problem in weights.problems
    ]
