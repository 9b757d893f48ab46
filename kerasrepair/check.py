"""`check`: what a Keras release will reject in an archive, without loading it.

    archive ─► Context (the target release) ─► each rule of the registry that
               breaks in that release: detect ─► [Finding]

The target release is the one the archive was saved with (metadata.json), or
the one asked for (`--keras 3.4`: "will this load in 3.4?"). The rules of the
config schema (KR2xx) share one walk of the serialized objects
(`Context.objects`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from . import keras2, registry, runner, schema
from .archive import Archive, open_archive
from .context import Context, Options
from .edit import Edit
from .findings import ERROR, SAFE, WARNING, Finding


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
    """What every checked rule finds in `ctx`, for its target release.

    A Keras 2 archive is read as `fix` converts it: the conversion rules
    (KR7xx) report what they convert, and the other rules report what is
    left after their safe fixes, so one problem is not reported twice (an
    argument KR702 renames is no unknown argument too). So is any archive by
    the porting rules (`registry.PORTING`: a DTypePolicy object converted
    for 3.0.0 is no unknown class too).
    """
    found = []
    modules = [
        module
        for module in registry.MODULES
        if module.RULE.checked and schema.breaks_in(module.RULE.breaks_in, ctx.target)
    ]
    keras2_archive = keras2.applies(ctx.archive)
    converting = registry.PORTING + (registry.KERAS2 if keras2_archive else ())
    conversion = [module for module in modules if module in converting]
    if keras2_archive or any(module.detect(ctx) for module in conversion):
        edit = Edit.of(json.dumps(ctx.config).encode())
        ctx = Context(ctx.archive, edit.config, ctx.options, ctx.edited_weights, edit)
        ctx, found = runner.run(ctx, edit, conversion, lambda finding: finding.fix == SAFE)
    # run once: either above, or they found nothing to convert
    modules = [module for module in modules if module not in conversion]
    for module in modules:
        found += module.detect(ctx)
    return found
