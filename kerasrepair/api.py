"""File-level calls for Python users and the CLI: open, fix, write.

from kerasrepair import fix_archive
from kerasrepair.context import Options

result = fix_archive("broken.keras", "fixed.keras", Options(keras="3.10.0"))
result.left        # the errors Keras 3.10 would still reject
"""

from __future__ import annotations

import os
from collections.abc import Collection

from . import keras2
from .archive import open_archive
from .context import DEFAULTS, Options
from .fix import FixResult, fix
from .writer import write_edit


def fix_archive(
    path: str | os.PathLike,
    output: str | os.PathLike | None,
    options: Options = DEFAULTS,
    only: Collection[str] | None = None,
    skip: Collection[str] = (),
) -> FixResult:
    """Repair the archive at `path` into `output`: a new file, `path` itself
    (in place, with a backup until the result is checked), or None for a dry
    run that writes nothing. A Keras 2 model that cannot be fully converted
    is not written (`result.withheld`)."""
    with open_archive(path) as archive:
        result = fix(archive, options, only, skip)
        if output is not None and keras2.applies(archive) and result.left:
            # a Keras 2 model half-converted loads nowhere: nothing is written
            result.withheld = True
        elif output is not None:
            write_edit(archive, result.edit, output)
            result.output = str(output)
    return result
