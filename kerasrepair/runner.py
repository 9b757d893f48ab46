"""Running repairing rules in order over one config (`run`), shared by `fix`
(every rule) and `check` (which reads a Keras 2 archive as its conversion).

Each rule's `detect` runs on the config the rules before it left; the chosen
findings go to its `apply`, which edits `edit`; a new `Context` follows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import ModuleType
from typing import TYPE_CHECKING

from .context import Context
from .edit import Edit
from .findings import Finding

if TYPE_CHECKING:
    from .weights_tree import WeightsTree


def run(
    ctx: Context,
    edit: Edit,
    modules: Iterable[ModuleType],
    choose: Callable[[Finding], bool],
) -> tuple[Context, list[Finding]]:
    """Detect and repair with each of `modules` in order; the context after
    the last, and every finding detected on the way."""
    found = []
    for module in modules:
        findings = module.detect(ctx)
        found += findings
        chosen = [finding for finding in findings if choose(finding)]
        if chosen:
            edit.changes += module.apply(ctx, edit, chosen)
            edit.edited()
            after = weights_after(ctx.archive, edit)
            ctx = Context(ctx.archive, edit.config, ctx.options, after, edit)
    return ctx, found


def weights_after(archive, edit: Edit) -> WeightsTree | None:
    """The weights tree the recorded operations leave (None: the archive's):
    a re-laid weights file (`edit.weights_plan`), then the group operations."""
    if edit.weights_plan is None and not edit.weight_ops:
        return None
    tree = archive.weights()
    if edit.weights_plan is not None:
        from .weights import planned_tree

        tree = planned_tree(edit.weights_plan, tree)
    return tree.edited(edit.weight_ops) if edit.weight_ops else tree
