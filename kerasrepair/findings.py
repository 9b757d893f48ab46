"""What rules are and what they report: `Rule`, `Finding`, `Change`.

Every check and repair is a `Rule` (one module under `passes/`, listed in
`registry`). Its findings carry its code wherever they are reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

ERROR = "error"
WARNING = "warning"
NOTE = "note"  # worth knowing, not a problem of the archive (e.g. a custom object)
SEVERITIES = (ERROR, WARNING, NOTE)

# How a finding can be fixed (`Finding.fix`)
SAFE = "safe"  # same behaviour, same weights
UNSAFE = "unsafe"  # changes behaviour or unties weights: only with --unsafe-fixes

# Whether a rule's findings can be fixed (`Rule.fix`), as ruff says it
ALWAYS = "always"
SOMETIMES = "sometimes"
NEVER = "never"


@dataclass(frozen=True)
class Rule:
    """What a rule is, for `rules`, `explain`, SARIF and `--only`/`--skip`.

    `breaks_in` is the span of Keras minor releases, `("3.0", "3.6")`, whose
    loader fails on (or silently mis-loads) what the rule finds; None: every
    release. `check` and `fix` run the rule only for a target in that span.
    `checked` is False for a rule that describes (inspect shows it) rather
    than predicts what a load does: `check` and `fix` leave it out.
    """

    code: str  # "KR" + three digits
    name: str  # kebab case; its module is the name in snake case
    summary: str
    explanation: str
    severity: str = ERROR
    fix: str = NEVER
    breaks_in: tuple[str, str] | None = None
    checked: bool = True

    @property
    def module_name(self) -> str:
        return self.name.replace("-", "_")


@dataclass(frozen=True)
class Finding:
    """A problem in an archive, said in the user's terms.

    `location` is a JSON pointer into config.json (or `entry:path`); `fix`
    says whether `kerasrepair fix` can repair it (`safe`, `unsafe`) or not
    (None, and then `hint` says what to change in the user's code).
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
    """One edit a fix made, where it made it."""

    code: str
    location: str
    description: str

    def to_dict(self) -> dict:
        return asdict(self)
