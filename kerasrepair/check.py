"""`check`: what a Keras release will reject in an archive, without loading it.

    archive ─► Context (the target release) ─► each rule of the registry that
               breaks in that release: detect ─► [Finding]

The target release is the one the archive was saved with (metadata.json), or
the one asked for (`--keras 3.4`: "will this load in 3.4?"). The rules of the
config schema (KR2xx) share one walk of the serialized objects
(`Context.objects`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from . import registry, schema
from .archive import Archive, open_archive
from .context import Context, Options
from .findings import ERROR, WARNING, Finding


@dataclass
class CheckResult:
    path: str
    saved_with: str | None  # the Keras version metadata.json names
    target: str  # the release checked against, e.g. "3.4.1"
    findings: list[Finding] = field(default_factory=list)

    def failed(self, strict: bool = False) -> bool:
        """What `check` exits 1 for: errors (what the release will reject, or load
        wrongly); with `strict`, warnings too. Notes never count."""
        failing = (ERROR, WARNING) if strict else (ERROR,)
        return any(f.severity in failing for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "saved_with": self.saved_with,
            "target": self.target,
            "findings": [f.to_dict() for f in self.findings],
        }


def check_archive(path: str | os.PathLike, keras: str | None = None) -> CheckResult:
    """Check the archive at `path` against Keras `keras` ("3.4", "3.4.1"), or
    the release that saved it; raises ArchiveError if it cannot be read, and
    ValueError for a `keras` with no schema."""
    if keras is not None:
        schema.release_for(keras)  # a bad --keras before the archive is read
    with open_archive(path) as archive:
        return check(archive, keras)


def check(archive: Archive, keras: str | None = None) -> CheckResult:
    ctx = Context(archive, archive.config, Options(keras=keras))
    return CheckResult(
        str(archive.path), archive.keras_version, ctx.target.keras_version, findings(ctx)
    )


def findings(ctx: Context) -> list[Finding]:
    """What every checked rule finds in `ctx`, for its target release."""
    found = []
    for module in registry.MODULES:
        rule = module.RULE
        if rule.checked and schema.breaks_in(rule.breaks_in, ctx.target):
            found += module.detect(ctx)
    return found
