"""The errors the CLI turns into one line: what is wrong, where, what to do.

`ArchiveError`: input that cannot be read (exit 2). `RepairError`: a repair
that could not be made (exit 1; nothing is written). `WriteError`: the new
archive failed its check after writing (exit 2; nothing is written).
"""


class KerasRepairError(Exception):
    """A problem said in one line: `where: what; hint`."""

    def __init__(self, where: str, what: str, hint: str = ""):
        self.where = where
        self.what = what
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        line = f"{self.where}: {self.what}" if self.where else self.what
        return f"{line}; {self.hint}" if self.hint else line


class ArchiveError(KerasRepairError):
    """Input that cannot be read: says what is wrong, where, and what to do."""


class RepairError(KerasRepairError):
    """A repair the user asked for could not be made (e.g. a Lambda patch the
    child refused): the archive is readable, nothing was written."""


class WriteError(Exception):
    """The new archive failed its check after writing; nothing was written."""


class SourceError(ValueError):
    """`batch`: a source that names nothing to process, an OUTDIR inside a
    source, an executor that cannot run."""
