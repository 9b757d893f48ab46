"""A slice of the compatibility matrix (dev/compat_matrix.py, issue 11's proof) in the tests.

For each pair the issue names, every matrix model saved by the first release is
checked for the second (`check` must predict the real load there), and where
it fails as saved, ported with `fix --keras` and loaded there: it must load
with the original's predictions and optimizer iteration count, or `fix` must
report what the release cannot express (and write nothing).
"""

from __future__ import annotations

import compat_matrix
import pytest

# target -> the releases whose archives are ported to it (issue 11's list)
SLICE = {
    "3.0.5": ["3.15.1"],
    "3.3.3": ["3.15.1"],
    "3.0.0": ["3.6.0", "3.3.3"],
    "3.15.1": ["3.0.0"],
    "3.4.1": ["3.4.1", "3.6.0"],  # a Sequential holding a nested Functional (keras#19959)
}
# what a target cannot express, by model: a Sequential's nested Functional whose
# output is a list of one is rebuilt returning a list by 3.0-3.2 (KR306)
UNFIXABLE = {("sequential_nested_functional", "3.0.5"), ("sequential_nested_functional", "3.0.0")}


@pytest.mark.releases
@pytest.mark.parametrize("target", SLICE)
def test_every_matrix_model_is_checked_right_and_ported(target, tmp_path):
    cells = compat_matrix.matrix(list(compat_matrix.NAMES), [target], SLICE[target], tmp_path)
    assert sum(len(rows) for rows in cells.values()) >= len(SLICE[target])
    ported = 0
    for name, rows in cells.items():
        for saver, row in rows.items():
            cell = row[target]
            where = f"{name} saved by {saver}, in {target}: {cell}"
            assert cell["check"] == "ok", where
            if (name, target) in UNFIXABLE and cell["port"] != "-":
                assert cell["port"] == "left" and cell["left"] == ["KR306"], where
            else:
                assert cell["port"] in ("ok", "-"), where
            ported += cell["port"] == "ok"
    assert ported, f"nothing to port to {target}: the slice proves nothing"
