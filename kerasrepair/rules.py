"""Every code kerasrepair reports: the checks of `check` (KR2xx) and the repair
passes (KR3xx-KR6xx), one registry for `rules`, `explain` and SARIF."""

from __future__ import annotations

from .check import RULES as CHECK_RULES
from .findings import ERROR
from .passes import PASSES

ALL_RULES = tuple(sorted((*CHECK_RULES, *PASSES), key=lambda rule: rule.CODE))


def by_code(code: str):
    """The check or pass of `code` (any case); KeyError when there is none."""
    for rule in ALL_RULES:
        if code.upper() == rule.CODE:
            return rule
    raise KeyError(code)


def severity(rule) -> str:
    """What its findings usually are: passes that only warn say so."""
    return getattr(rule, "SEVERITY", ERROR)
