"""KR910: a weight that declares far more data than its file stores (a shape bomb)."""

from __future__ import annotations

from ..context import Context
from ..findings import ERROR, NEVER, Finding, Rule
from . import weights_reference

RULE = Rule(
    code="KR910",
    name="weights-shape-bomb",
    severity=ERROR,
    summary="A weight declares far more data than the file stores: loading it "
    "allocates what it declares",
    explanation="""\
An HDF5 dataset declares its shape and type in its header, and its data may
be chunked and compressed, with chunks never written read back as a fill
value. A dataset of a few bytes can so declare terabytes, and Keras allocates
what is declared when it loads the weights: the loading process runs out of
memory and is killed (CVE-2026-0897; CVE-2026-12570: the same through
`load_model`'s own weights store, which the first fix missed. Keras 3.15.1
refuses a dataset over 4 GiB that declares over 1000x what it stores; the
releases each affects are in the advisories).

An `.npy` member of `model.weights.npz` whose header declares more than the
member holds is the same trap: numpy allocates the declared array first.

kerasrepair reads headers only, never the data. A weight that declares more
than 64 MiB must store at least 1/2000 of it (`weights.BOMB_FLOOR` and
`BOMB_RATIO`: deflate, the compression HDF5 has, cannot pass ~1032:1 even on
zeros), and uncompressed data must fit in its file. Keras never writes such a
dataset (its weights are contiguous and uncompressed). `fix` never removes
it: re-save the model from its code.""",
    fix=NEVER,
)


def detect(ctx: Context) -> list[Finding]:
    return weights_reference.findings_of(
        ctx,
        RULE.code,
        "loading this file exhausts memory: re-save the model, and load it only if "
        "you trust its source",
    )
