"""The repair passes, one module each, run in the order of `PASSES`.

A pass module has:

    CODE         stable code, "KR" + three digits (KR1xx archive, KR2xx config
                 schema, KR3xx graph wiring, KR4xx weights, KR5xx serialized
                 code, KR6xx Keras version drift, KR9xx security)
    NAME         short name
    SUMMARY      one line
    EXPLANATION  what `kerasrepair explain CODE` prints
    FIX          "safe", "unsafe" or None (detect only)
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
)

# Indices first: the call-order replay needs the wiring the model was built with.
PASSES = (
    lost_node_indices,
    shared_layer_order,
    described_twice,
    numpy_arguments,
    lambda_globals,
    unbuildable_subclassed,
)


def by_code(code: str):
    for module in PASSES:
        if code.upper() == module.CODE:
            return module
    raise KeyError(code)
