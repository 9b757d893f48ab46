"""KR202: metadata.json is missing or not as Keras writes it."""

from __future__ import annotations

from .. import objects, pointer, schema
from ..archive import METADATA
from ..context import Context
from ..findings import WARNING, Finding, Rule

RULE = Rule(
    code=objects.METADATA_STRUCTURE,
    name="metadata-structure",
    severity=WARNING,
    summary="metadata.json is missing or not as Keras writes it",
    explanation="""\
metadata.json records the Keras version that saved the archive and when. Keras
does not read it back, so a bad one does not stop a load, but without it the
release an archive needs is unknown: `check` then targets the newest release it
has a schema for (or the one given with --keras).""",
)


def detect(ctx: Context) -> list[Finding]:
    archive = ctx.archive
    findings = [
        Finding(RULE.code, f"{problem.entry} {problem.message}", f"{problem.entry}:", WARNING)
        for problem in archive.problems
    ]
    if archive.metadata is not None and archive.format != "h5":  # an HDF5 model's: its attributes
        for error in objects.validate(schema.METADATA_ID, archive.metadata):
            findings.append(
                Finding(
                    RULE.code,
                    f"{METADATA}: {error.message}",
                    f"{METADATA}:{pointer.of(error.absolute_path)}",
                    WARNING,
                )
            )
    return findings
