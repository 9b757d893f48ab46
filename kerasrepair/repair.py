"""`fix`: run the repair passes over an archive and write the repaired copy.

    archive ─► each pass: detect, then apply into the Edit ─► writer

config.json is rewritten (with Keras's own JSON layout) when a pass changed
it, and model.weights.h5 only when a pass recorded weight-group operations
(applied to a scratch copy); every other entry is copied byte for byte, and an
archive nothing was fixed in is copied whole, byte-identical.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .archive import CONFIG, WEIGHTS_H5, Archive, open_archive
from .context import DEFAULTS, Context, Edit, Options
from .findings import SAFE, UNSAFE, Change, Finding
from .passes import PASSES, by_code
from .writer import write_archive

if TYPE_CHECKING:
    from .weights import WeightsTree  # h5py is imported only when weights are edited


@dataclass
class FixResult:
    path: str
    output: str | None  # None when nothing was written (dry run)
    changes: list[Change] = field(default_factory=list)
    remaining: list[Finding] = field(default_factory=list)
    config_before: str = ""
    config_after: str = ""
    # the weights trees before and after, when a pass edited the weights
    weights_before: WeightsTree | None = None
    weights_after: WeightsTree | None = None

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "output": self.output,
            "changes": [c.to_dict() for c in self.changes],
            "remaining": [f.to_dict() for f in self.remaining],
        }


def select_passes(only: list[str] | None = None, skip: list[str] | None = None) -> list:
    """The passes to run, in order; unknown codes raise KeyError."""
    chosen = [by_code(code) for code in only] if only else list(PASSES)
    skipped = {by_code(code).CODE for code in skip or ()}
    return [p for p in PASSES if p in chosen and p.CODE not in skipped]


def repair(archive: Archive, passes=PASSES, options: Options = DEFAULTS) -> tuple[Edit, Context]:
    """Run each pass's fix in order; each sees what the previous ones left.

    Returns the edit and a context of the final config. A context (and the
    graph it builds) is made anew only after a pass changed the config.
    """
    edit = Edit.of(archive)
    ctx = Context(archive, edit.config, options)
    for p in passes:
        if any(_runs(finding, options) for finding in p.detect(ctx)):
            p.apply(ctx, edit)
            ctx = Context(archive, edit.config, options)
    return edit, ctx


def fix_archive(
    path: str | os.PathLike,
    output: str | os.PathLike | None,
    passes=PASSES,
    options: Options = DEFAULTS,
) -> FixResult:
    """Repair `path` into `output` (None: dry run, nothing is written)."""
    with open_archive(path) as archive:
        edit, after = repair(archive, passes, options)
        result = FixResult(
            path=str(path),
            output=None,
            changes=edit.changes,
            remaining=[finding for p in passes for finding in p.detect(after)],
            config_before=archive.config_bytes.decode("utf-8"),
            config_after=config_json(edit.config) if edit.changes else "",
        )
        replacements = {CONFIG: result.config_after.encode()} if edit.changes else {}
        with contextlib.ExitStack() as scratch:
            if edit.weight_ops:
                from .weights import read_weights_file
                from .weights_edit import edited_weights

                directory = Path(output).parent if output is not None else None
                weights = scratch.enter_context(edited_weights(archive, edit.weight_ops, directory))
                replacements[WEIGHTS_H5] = weights
                result.weights_before = archive.weights()
                result.weights_after = read_weights_file(weights)
            if output is not None:
                write_archive(archive, output, replacements)
                result.output = str(output)
    return result


def fix_in_place(path: str | os.PathLike, passes=PASSES, options: Options = DEFAULTS):
    """Repair `path` itself. A hard-linked backup of the original stays beside
    it until the new archive is written, renamed into place and re-checked."""
    path = Path(path)
    backup = path.with_name(path.name + ".kerasrepair-backup")
    backup.unlink(missing_ok=True)
    os.link(path, backup)
    try:
        result = fix_archive(path, path, passes, options)
    except BaseException:
        backup.unlink()  # the writer replaces `path` atomically or not at all
        raise
    with open_archive(path):  # raises if what now stands at `path` is unreadable
        pass
    backup.unlink()
    return result


def config_json(config: dict) -> str:
    """config.json as Keras writes it (`json.dumps` defaults)."""
    return json.dumps(config)


def _runs(finding: Finding, options: Options) -> bool:
    return finding.fix == SAFE or (finding.fix == UNSAFE and options.unsafe_fixes)
