"""KR207: no schema for the release that saved the archive: checked against another."""

from __future__ import annotations

from .. import objects, schema
from ..archive import METADATA
from ..context import Context
from ..findings import WARNING, Finding, Rule

RULE = Rule(
    code=objects.NO_SCHEMA_FOR_RELEASE,
    name="no-schema-for-release",
    severity=WARNING,
    summary="No schema for the release that saved the archive: checked against another",
    explanation="""\
kerasrepair has argument schemas for every Keras 3 minor release it was built
with (`kerasrepair check --help` lists them). An archive saved by another
release (a newer one, Keras 2, or one without metadata.json) is checked against
the nearest known release, and arguments that release does not know are reported
as such; pass --keras X.Y to check against the release you will load with.""",
)


def detect(ctx: Context) -> list[Finding]:
    saved = ctx.archive.keras_version
    if ctx.options.keras is not None or schema.name_for(saved or "") or ctx.archive.keras2:
        return []  # a Keras 2 archive is checked as its conversion to Keras 3
    # newer than any known, Keras 2 (loaded by a Keras 3) or unknown: the newest
    said = f"Keras {saved}" if saved else "an unknown Keras release (no keras_version)"
    return [
        Finding(
            code=RULE.code,
            severity=WARNING,
            location=f"{METADATA}:/keras_version",
            message=f"the archive was saved by {said}, which kerasrepair has no schema for; "
            f"checked against Keras {ctx.target.keras_version}",
            hint="pass --keras X.Y to check against the release you will load it with",
        )
    ]
