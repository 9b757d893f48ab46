"""KR302: Keras 3.2.0/3.2.1 wrote every node index inside `inbound_nodes` as 0.
A layer that read the second call of a shared layer now reads the first: the
archive loads in every release and silently predicts something else. The
repair finds the one wiring under which every call is read again, and the
model predicts what it was built to, in 3.2.1 itself and in later releases."""

import pytest

from conftest import FIXTURES, MODELS, assert_matches_reference
from kerasrepair import fix_archive, open_archive
from kerasrepair import pointer as json_pointer

SAVED_BY_3_2 = FIXTURES / "releases" / "keras-3.2.1"
BROKEN = ["shared_layer_three_uses", "shared_twice_then_dense"]


def test_the_lost_index_is_restored(tmp_path):
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(SAVED_BY_3_2 / "shared_twice_then_dense.keras", fixed)
    assert [(c.code, c.location) for c in result.changes] == [
        ("KR302", "/config/layers/2/inbound_nodes/0")
    ]
    with open_archive(fixed) as archive:
        node = json_pointer.get(archive.config, "/config/layers/2/inbound_nodes/0")
    assert node["args"][0]["config"]["keras_history"] == ["shared", 1, 0]


@pytest.mark.parametrize(
    "archive",
    [
        SAVED_BY_3_2 / "shared_twice_in_a_row.keras",  # t(t(x)): every 0 is right
        SAVED_BY_3_2 / "shared_add_reused.keras",
        MODELS / "functional_nested_shared.keras",
        FIXTURES / "releases" / "keras-3.3.3" / "shared_layer_three_uses.keras",
    ],
)
def test_consistent_wiring_is_not_reported(archive):
    result = fix_archive(archive, None)
    assert "KR302" not in {c.code for c in result.changes}
    assert "KR302" not in {f.code for f in result.remaining}


def test_without_a_3_2_archive_the_finding_has_no_fix(tmp_path):
    """The same broken wiring, but metadata.json no longer says 3.2.x: the tool
    cannot know the indices were written as 0, so it reports and leaves it."""
    from kerasrepair import write_archive

    source = SAVED_BY_3_2 / "shared_twice_then_dense.keras"
    relabelled = tmp_path / "relabelled.keras"
    with open_archive(source) as archive:
        write_archive(archive, relabelled, {"metadata.json": b'{"keras_version": "3.5.0"}'})
    result = fix_archive(relabelled, None)
    assert result.changes == []
    [finding] = result.left  # and a KR202 warning: this metadata.json has no date_saved
    assert finding.code == "KR302" and finding.fix is None
    assert "re-save the model" in finding.hint


@pytest.mark.releases
@pytest.mark.parametrize("name", BROKEN)
def test_repair_is_proven_in_3_2_1_and_later_releases(name, tmp_path):
    from releases import probe

    original = SAVED_BY_3_2 / f"{name}.keras"
    reference = original.with_suffix(".npz")
    before = probe("3.15.1", original, reference)
    assert before["status"] == "mismatch", before  # silently wrong, no error

    fixed = tmp_path / f"{name}.keras"
    result = fix_archive(original, fixed)
    assert "KR302" in {c.code for c in result.changes}
    assert result.remaining == []
    for loader in ("3.2.1", "3.3.3", "3.7.0", "3.15.1"):
        # the original (in the same child, on the same inputs) predicts something
        # else, or does not load at all (shared_layer_three_uses before 3.7, KR301):
        # the saved reference is what to match, within the tolerance
        after = probe(loader, fixed, reference, compare_with=original)
        assert_matches_reference(after, loader)
        compared = after["compared"]
        assert compared["status"] == "load_error" or (
            compared["status"] == "ok" and not compared["within_tolerance"]
        ), (loader, compared)
