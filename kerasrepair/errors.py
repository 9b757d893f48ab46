"""The one error type the CLI turns into a single line and exit status 2."""


class ArchiveError(Exception):
    """Input that cannot be read: says what is wrong, where, and what to do.

    `where` is the file (and the entry or position inside it); `hint` is what
    the user can do about it.
    """

    def __init__(self, where: str, what: str, hint: str = ""):
        self.where = where
        self.what = what
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        line = f"{self.where}: {self.what}"
        return f"{line}; {self.hint}" if self.hint else line
