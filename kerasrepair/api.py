"""File-level calls for Python users and the CLI: open, fix, write.

from kerasrepair import fix_archive
from kerasrepair.context import Options

result = fix_archive("broken.keras", "fixed.keras", Options(keras="3.10.0"))
result.left        # the errors Keras 3.10 would still reject
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Collection

from . import keras2, schema
from .archive import Archive, open_archive
from .context import DEFAULTS, Options
from .fix import FixResult, repair, result_of
from .writer import Staged, staged_edit, write_edit, written_ahead, written_as_h5


def fix_archive(
    path: str | os.PathLike,
    output: str | os.PathLike | None,
    options: Options = DEFAULTS,
    only: Collection[str] | None = None,
    skip: Collection[str] = (),
    ahead: bool = False,
) -> FixResult:
    """Repair the archive at `path` into `output`: a new file, `path` itself
    (in place, with a backup until the result is checked), or None for a dry
    run that writes nothing. A Keras 2 model that cannot be fully converted
    is not written (`result.withheld`), nor is an archive ported to another
    release that the release would still reject (unless `only`/`skip` chose
    the fixes): a half-done port loads nowhere it did not load before.

    `ahead`: write the output in a forked child, begun at once and finished
    while the result is checked, and keep it only if it is to be written
    (the CLI, a process of one thread; see `writer.written_ahead`)."""
    with open_archive(path) as archive:
        if archive.format == "h5" and output is not None and not written_as_h5(output):
            options = dataclasses.replace(options, written_as="keras")  # a conversion
        begun = written_ahead(archive, output) if ahead else contextlib.nullcontext()
        with begun as early:  # the entries no repair rewrites, copied meanwhile
            ctx, edit = repair(archive, options, only, skip)
            if output is None:
                return result_of(ctx, edit)
            with staged_edit(archive, edit, output, early) as staged:
                fixed = result_of(ctx, edit)
                write_result(archive, fixed, output, only or skip, staged)
    return fixed


def write_result(
    archive: Archive,
    result: FixResult,
    output: str | os.PathLike,
    chosen: Collection[str] = (),
    staged: Staged | None = None,
) -> None:
    """Write `result` to `output` (or commit `staged`, its output written
    ahead), unless it is a conversion or a port the target would still
    reject (`result.withheld_because` says why)."""
    # a security finding (KR9xx) stays reported, but leaves no conversion or
    # port incomplete: the target loads the model
    if any(not finding.code.startswith("KR9") for finding in result.left):
        result.withheld_because = _incomplete(archive, result.target, chosen)
    if not result.withheld:
        if staged is not None:
            staged.commit()
        else:
            write_edit(archive, result.edit, output)
        result.output = str(output)


def _incomplete(archive: Archive, target: str, chosen: Collection[str]) -> str:
    """Why an output with errors left is not written ("" when it is written:
    repairs for the release that saved the archive, which loads what is left
    no worse than before, and a port whose fixes were chosen with
    `only`/`skip`, which asked for a partial one)."""
    if keras2.applies(archive):
        return "the conversion to Keras 3 is incomplete"
    if chosen:
        return ""
    saved = archive.keras_version
    try:
        ported = schema.minor_of(saved) != schema.minor_of(target)
    except (TypeError, ValueError):  # no version, or not one Keras writes
        ported = False
    return f"the port from Keras {saved} to {target} is incomplete" if ported else ""
