"""`fix`: run the repairs of the registry over an archive, in order. Pure: it
returns what to write (`FixResult.edit`) and writes nothing (see `writer`).

    archive ─► each repairing rule: detect, choose, apply into the Edit
            ─► check of the result for the target release ─► FixResult

A rule's `detect` runs once per config state; the runner chooses the findings
to repair (safe ones; unsafe ones only with --unsafe-fixes; `--only`/`--skip`
choose rules) and records the changes. Like `check`, it only runs the rules
that break in the target release: an archive its own release loads is left
alone (`--keras 3.0` repairs for every Keras 3 release). What is left is what
`check` would report on the output for the same target release, so `fix` says
"0 left" only when `check` of what it writes is clean.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import check, keras2, registry, runner, schema
from .archive import Archive
from .context import DEFAULTS, Context, Options
from .edit import Edit
from .findings import ERROR, NOTE, SAFE, UNSAFE, Change, Finding
from .passes import prepended_data

if TYPE_CHECKING:
    from .weights_tree import WeightsTree


@dataclass
class FixResult:
    path: str
    target: str  # the release repaired for and checked against, e.g. "3.10.0"
    edit: Edit = field(repr=False)
    config_before: str = field(repr=False)
    remaining: list[Finding] = field(default_factory=list)
    output: str | None = None  # set by the caller once written; None for a dry run
    # why nothing was written, e.g. "the conversion to Keras 3 is incomplete"
    # ("": written, or a dry run)
    withheld_because: str = ""
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
    def withheld(self) -> bool:
        """Nothing was written: a conversion or a port the target would reject."""
        return bool(self.withheld_because)

    @property
    def left(self) -> list[Finding]:
        """The errors left: what the target release would still reject."""
        return [finding for finding in self.remaining if finding.severity == ERROR]

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "output": self.output,
            "withheld": self.withheld,
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
    return result_of(*repair(archive, options, only, skip))


def repair(
    archive: Archive,
    options: Options = DEFAULTS,
    only: Collection[str] | None = None,
    skip: Collection[str] = (),
) -> tuple[Context, Edit]:
    """`fix`'s first step: the repairs, recorded in an Edit (what is written),
    and the context they leave."""
    edit = Edit.of(archive.config_bytes)
    ctx = Context(archive, edit.config, options, edit=edit)
    ctx.target  # noqa: B018 (a --keras with no schema fails before anything runs)
    if archive.weights_read_elsewhere:  # meanwhile, what the rules derive from the config
        ctx.graph, ctx.objects  # noqa: B018
    modules = [
        module
        for module in registry.MODULES
        if registry.repairs(module)
        and schema.breaks_in(module.RULE.breaks_in, ctx.target)
        and module.RULE.code not in skip
        and (only is None or module.RULE.code in only)
    ]
    ctx, _ = runner.run(ctx, edit, modules, lambda finding: _chosen(finding, options))
    if keras2.applies(archive) and edit.changes:
        # converted: the archive is now one of the release it was converted for
        saved = (archive.metadata or {}).get("date_saved")
        edit.metadata = {
            "keras_version": ctx.target.keras_version,
            "date_saved": saved if isinstance(saved, str) else "1980-01-01@00:00:00",
            "converted_from": archive.keras_version,
        }
    return ctx, edit


def result_of(ctx: Context, edit: Edit) -> FixResult:
    """`fix`'s second step: what the target release would still find in the
    repaired archive (`check` of what is written)."""
    archive = ctx.archive
    fixed = FixResult(
        path=str(archive.path),
        target=ctx.target.keras_version,
        edit=edit,
        config_before=archive.config_bytes.decode("utf-8"),
        # the writer writes the archive from its first entry: nothing is
        # prepended to what fix writes (KR911 describes the input only)
        remaining=[
            finding
            for finding in check.findings(ctx)
            if finding.severity != NOTE and finding.code != prepended_data.RULE.code
        ],
    )
    if edit.weight_ops or edit.weights_plan is not None:
        fixed.weights_before = archive.weights()
        fixed.weights_after = ctx.weights()
    return fixed


def _chosen(finding: Finding, options: Options) -> bool:
    return finding.fix == SAFE or (finding.fix == UNSAFE and options.unsafe_fixes)
