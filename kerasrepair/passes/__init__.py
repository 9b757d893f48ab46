"""The rules: one module each, named after the rule (`lost_node_indices` is
`lost-node-indices`, KR302), listed in order by `registry`.

A rule module has:

    RULE                    its `findings.Rule`: code, name, summary, explanation,
                            severity, fix availability, the releases it breaks in
    detect(ctx) -> [Finding]                     reads only; run once per config state
    apply(ctx, edit, findings) -> [Change]       only where the rule repairs: repairs
                            exactly `findings` (the runner chose them: safe ones, unsafe
                            ones with --unsafe-fixes), in `edit`; writes no file

A rule is idempotent: on its own output, `detect` finds nothing it can fix.
Code ranges: KR1xx archive, KR2xx config schema, KR3xx graph wiring, KR4xx
weights, KR5xx serialized code, KR6xx Keras version drift, KR7xx Keras 2
migration, KR9xx security.
"""
