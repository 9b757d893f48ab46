"""KR907: a TFSMLayer, which loads a TensorFlow SavedModel from a path outside the archive."""

from __future__ import annotations

from .. import advisories, pointer, security
from ..context import Context
from ..findings import ERROR, NEVER, Finding, Rule

RULE = Rule(
    code="KR907",
    name="saved-model-path",
    severity=ERROR,
    summary="A TFSMLayer: loading the model loads the SavedModel at a path outside the archive",
    explanation="""\
keras.layers.TFSMLayer wraps a TensorFlow SavedModel for inference; its
config keeps only the SavedModel's path (`filepath`), and loading the model
calls `tf.saved_model.load(filepath)`: whatever is at that path on the
loading machine (or behind a `gs://` URL) becomes part of the model, and its
graph runs on the model's inputs (CVE-2026-1462). Keras 3.12.1, 3.13.2 and
3.14+ refuse a TFSMLayer while safe_mode=True; older releases load it.

An error, whatever the path: in a release that refuses it the model does not
load, and in one that loads it the archive runs code it does not hold. There
is no fix: do not load the file unless you trust its source and the
SavedModel at that path; export the model whole instead (model.export, or
keras.Model with the SavedModel's layers rebuilt).""",
    fix=NEVER,
)


def detect(ctx: Context) -> list[Finding]:
    said = advisories.advised(RULE.code)
    found = []
    for path, obj, owner, arguments in security.instances(ctx, "TFSMLayer"):
        filepath = arguments.get("filepath")
        named = f"the SavedModel at {filepath!r}" if isinstance(filepath, str) else "a SavedModel"
        where = (*path, "config", "filepath") if "filepath" in arguments else path
        found.append(
            Finding(
                RULE.code,
                f"{security.describe(obj, owner)} loads {named}, outside the archive, "
                "when the model is loaded",
                pointer.of(where),
                ERROR,
                layer=security.layer_of(obj, owner),
                hint="do not load this file unless you trust its source and that SavedModel; "
                "Keras 3.12.1, 3.13.2 and 3.14+ refuse it in safe_mode. "
                f"Advisories: {said}",
            )
        )
    return found
