"""The repair passes, one module each, run in the order of `PASSES`.

A pass module has:

    CODE         stable code, "KR" + three digits (KR1xx archive, KR2xx config
                 schema, KR3xx graph wiring, KR4xx weights, KR5xx serialized
                 code, KR6xx Keras version drift, KR9xx security)
    NAME         short name
    SUMMARY      one line
    EXPLANATION  what `kerasrepair explain CODE` prints
    FIX          "safe", "unsafe" or None (detect only)
    BREAKS_IN    (first, last) Keras minor releases whose loader fails on (or
                 silently mis-loads) what it finds, e.g. ("3.0", "3.6"); None:
                 every release. `check --keras X.Y` reports it only there.
    detect(ctx) -> list[Finding]       reads only
    apply(ctx, edit) -> list[Change]   records its repair in `edit`; writes no file

A pass is idempotent: on its own output, `detect` finds nothing it can fix.
"""

from . import (
    described_twice,
    lambda_globals,
    lost_node_indices,
    numpy_arguments,
    shared_layer_order,
    unbuildable_subclassed,
    unknown_arguments,
)

# Indices first: the call-order replay needs the wiring the model was built with.
PASSES = (
    lost_node_indices,
    shared_layer_order,
    described_twice,
    numpy_arguments,
    lambda_globals,
    unbuildable_subclassed,
    unknown_arguments,  # only with `fix --keras X.Y`
)


def by_code(code: str):
    for module in PASSES:
        if code.upper() == module.CODE:
            return module
    raise KeyError(code)
