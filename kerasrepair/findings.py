"""What checks and passes report: a `Finding`, and a `Change` a fix made."""

from __future__ import annotations

from dataclasses import asdict, dataclass

ERROR = "error"
WARNING = "warning"
NOTE = "note"  # worth knowing, not a problem of the archive (e.g. a custom object)

SAFE = "safe"  # same behaviour, same weights
UNSAFE = "unsafe"  # changes behaviour or unties weights: only with --unsafe-fixes


@dataclass(frozen=True)
class Finding:
    """A problem in an archive, said in the user's terms.

    `location` is a JSON pointer into config.json (or `entry:hdf5-path`);
    `fix` says whether `kerasrepair fix` can repair it (`safe`, `unsafe`) or
    not (None, and then `hint` says what to change in the user's code).
    """

    code: str
    message: str
    location: str
    severity: str = ERROR
    layer: str | None = None
    fix: str | None = None
    hint: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Change:
    """One edit a pass made, where it made it."""

    code: str
    location: str
    description: str

    def to_dict(self) -> dict:
        return asdict(self)
