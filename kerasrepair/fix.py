"""`fix`: run the repairs of the registry over an archive, in order. Pure: it
returns what to write (`FixResult.edit`) and writes nothing (see `writer`).

    archive ─► each repairing rule: detect, choose, apply into the Edit
            ─► check of the result for the target release ─► FixResult

A rule's `detect` runs once per config state; the runner chooses the findings
to repair (safe ones; unsafe ones only with --unsafe-fixes; `--only`/`--skip`
choose rules) and records the changes. What is left is what `check` would
report on the output for the same target release, so `fix` says "0 left" only
when `check` of what it writes is clean.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import check, registry
from .archive import Archive
from .context import DEFAULTS, Context, Options
from .edit import Edit
from .findings import ERROR, NOTE, SAFE, UNSAFE, Change, Finding

if TYPE_CHECKING:
    from .weights import WeightsTree  # h5py is imported only when weights are read


@dataclass
class FixResult:
    path: str
    target: str  # the release repaired for and checked against, e.g. "3.10.0"
    edit: Edit = field(repr=False)
    config_before: str = field(repr=False)
    remaining: list[Finding] = field(default_factory=list)
    output: str | None = None  # set by the caller once written; None for a dry run
    # the weights trees before and after, when a fix edits the weights
    weights_before: WeightsTree | None = None
    weights_after: WeightsTree | None = None

    @property
    def changes(self) -> list[Change]:
        return self.edit.changes

    @property
    def config_after(self) -> str:
        """The config.json that is written ("" when no fix changed it)."""
        return self.edit.config_json() if self.changes else ""

    @property
    def left(self) -> list[Finding]:
        """The errors left: what the target release would still reject."""
        return [finding for finding in self.remaining if finding.severity == ERROR]

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "output": self.output,
            "target": self.target,
            "changes": [c.to_dict() for c in self.changes],
            "remaining": [f.to_dict() for f in self.remaining],
        }


def fix(
    archive: Archive,
    options: Options = DEFAULTS,
    only: Collection[str] | None = None,
    skip: Collection[str] = (),
) -> FixResult:
    """The repairs of `archive` for `options.keras` (default: its own release).

    `only`/`skip` are rule codes: they choose which fixes are applied, never
    which findings are reported. Raises ValueError for a `keras` with no schema,
    and `RepairError` when a chosen repair cannot be made.
    """
    edit = Edit.of(archive.config_bytes)
    ctx = Context(archive, edit.config, options)
    ctx.target  # noqa: B018 (a --keras with no schema fails before anything runs)
    for module in registry.MODULES:
        code = module.RULE.code
        if not registry.repairs(module) or code in skip or (only is not None and code not in only):
            continue
        chosen = [finding for finding in module.detect(ctx) if _chosen(finding, options)]
        if chosen:
            edit.changes += module.apply(ctx, edit, chosen)
            ctx = Context(archive, edit.config, options, _weights_after(archive, edit))
    result = FixResult(
        path=str(archive.path),
        target=ctx.target.keras_version,
        edit=edit,
        config_before=archive.config_bytes.decode("utf-8"),
        remaining=[finding for finding in check.findings(ctx) if finding.severity != NOTE],
    )
    if edit.weight_ops:
        result.weights_before = archive.weights()
        result.weights_after = ctx.weights()
    return result


def _chosen(finding: Finding, options: Options) -> bool:
    return finding.fix == SAFE or (finding.fix == UNSAFE and options.unsafe_fixes)


def _weights_after(archive: Archive, edit: Edit) -> WeightsTree | None:
    """The weights tree the recorded group operations leave (None: untouched)."""
    return archive.weights().edited(edit.weight_ops) if edit.weight_ops else None
