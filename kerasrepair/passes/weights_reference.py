"""KR901: a weights entry that points outside itself, or part of it that cannot be read."""

from __future__ import annotations

from .. import advisories
from ..context import Context
from ..findings import ERROR, NEVER, Finding, Rule

RULE = Rule(
    code="KR901",
    name="weights-reference",
    severity=ERROR,
    summary="The weights file links outside itself (HDF5 links, external storage, "
    "virtual datasets): not followed",
    explanation="""\
An HDF5 file can hold soft links, external links to other files, datasets
whose data lives in external files, and virtual datasets that map datasets of
other files. Keras never writes any of them, and h5py follows them when Keras
loads the weights: a crafted archive makes `load_model` read files of the
machine it runs on into the model's weights, where they can be read back
(CVE-2026-1669: external storage; CVE-2026-9335: external links where Keras's
guards missed them; CVE-2026-12480: virtual datasets. Keras 3.15.1 refuses
all three; the releases each affects are in the advisories).

Every link is found wherever it stands (the root, a layer's group, `vars`, a
variable, the optimizer's), and none is followed: what it names is never
opened, not even to see whether it exists. An `.npy` member of
`model.weights.npz` whose header cannot be read is reported here too. A legacy
HDF5 model (`.h5`) holding any link is refused outright (exit 2).

`fix` never removes them: re-save the model from its code, and load this
file only if you trust its source.""",
    fix=NEVER,
)


def detect(ctx: Context) -> list[Finding]:
    return findings_of(
        ctx,
        RULE.code,
        "Keras never writes this, and h5py follows it on load: re-save the model, "
        "and load this file only if you trust its source",
    )


def findings_of(ctx: Context, code: str, hint: str) -> list[Finding]:
    """The weights tree's problems of one rule (KR901, KR910), as errors
    naming the rule's advisories."""
    weights = ctx.weights()
    problems = [problem for problem in weights.problems if problem.code == code]
    if not problems:
        return []
    said = advisories.advised(code)
    return [
        Finding(
            code=code,
            message=f"{problem.path}: {problem.what}",
            location=f"{weights.entry}:{problem.path}",
            severity=ERROR,
            hint=f"{hint}. Advisories: {said}",
        )
        for problem in problems
    ]
