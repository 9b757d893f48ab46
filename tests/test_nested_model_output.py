"""KR304: an output that is the call of a nested Functional model, which Keras
3.0-3.2 read one node too far (IndexError, or the next call's output)."""

import json

import pytest

from conftest import FIXTURES, assert_identical_to_original, assert_matches_reference, codes_of
from kerasrepair import check_archive, fix_archive, open_archive, write_archive
from kerasrepair.context import Options

RELEASES = FIXTURES / "releases"
AUTOENCODER = "nested_model_output"  # keras.Model(x, decoder(encoder(x)))
SHARED = "shared_submodel_reused"  # sub(between(sub(pre(x)))): the output is sub's call 2


def _config(path):
    with open_archive(path) as archive:
        return archive.config


def _with_config(source, target, edit):
    """A copy of `source` whose config.json is `edit(config)`."""
    with open_archive(source) as archive:
        config = archive.config
        edit(config)
        write_archive(archive, target, {"config.json": json.dumps(config).encode()})
    return target


@pytest.mark.parametrize("release", ["3.0.5", "3.2.1"])
def test_an_autoencoder_saved_by_3_0_to_3_2_is_reported_and_repaired(release, tmp_path):
    original = RELEASES / f"keras-{release}" / f"{AUTOENCODER}.keras"
    found = check_archive(original).findings
    assert codes_of(found) == ["KR304"]
    assert found[0].location == "/config/output_layers/0" and found[0].fix == "safe"
    assert "IndexError" in found[0].message and "'decoder'" in found[0].message

    fixed = tmp_path / "fixed.keras"
    result = fix_archive(original, fixed)
    assert codes_of(result.changes) == ["KR304"] and result.remaining == []
    assert _config(fixed)["config"]["output_layers"] == [["decoder", 0, 0]]
    assert check_archive(fixed).findings == []
    assert check_archive(fixed, "3.15").findings == []  # 3.3+ read index 0 as the last call


def test_releases_that_read_the_index_right_are_not_told(tmp_path):
    original = RELEASES / "keras-3.0.5" / f"{AUTOENCODER}.keras"
    for release in ("3.3", "3.6", "3.15"):
        assert "KR304" not in codes_of(check_archive(original, release).findings)
    result = fix_archive(original, tmp_path / "out.keras", Options(keras="3.3"))
    assert "KR304" not in codes_of(result.changes)


@pytest.mark.parametrize("release", ["3.0.5", "3.2.1", "3.6.0"])
def test_a_shared_submodel_output_gets_an_identity_layer(release, tmp_path):
    original = RELEASES / f"keras-{release}" / f"{SHARED}.keras"
    assert "KR304" in codes_of(check_archive(original, "3.0").findings)
    fixed = tmp_path / "fixed.keras"
    result = fix_archive(original, fixed, Options(keras="3.0"))
    assert result.left == []
    assert {"KR301", "KR304"} <= set(codes_of(result.changes))
    config = _config(fixed)["config"]
    assert config["output_layers"] == [["sub_output", 0, 0]]
    identity = config["layers"][-1]
    assert (identity["class_name"], identity["name"]) == ("Identity", "sub_output")
    # the legacy form, read as the second call of 'sub' (calls are numbered from 0)
    assert identity["inbound_nodes"] == [[["sub", 1, 0, {}]]]
    assert check_archive(fixed, "3.0").findings == []
    again = fix_archive(fixed, None, Options(keras="3.0"))
    assert again.changes == []  # idempotent


def test_a_name_in_compile_config_makes_the_identity_unsafe(tmp_path):
    def name_the_output(config):
        config["compile_config"] = {"loss": {"sub": "mse"}, "optimizer": "adam"}

    source = RELEASES / "keras-3.6.0" / f"{SHARED}.keras"
    named = _with_config(source, tmp_path / "named.keras", name_the_output)
    result = fix_archive(named, None, Options(keras="3.0"))
    left = [finding for finding in result.left if finding.code == "KR304"]
    assert [finding.fix for finding in left] == ["unsafe"]
    assert "--unsafe-fixes" in left[0].hint
    result = fix_archive(named, None, Options(keras="3.0", unsafe_fixes=True))
    assert "KR304" in codes_of(result.changes) and result.left == []


def test_dict_outputs_and_a_bare_triple_are_read(tmp_path):
    source = RELEASES / "keras-3.0.5" / f"{AUTOENCODER}.keras"

    def as_dict(config):
        config["config"]["output_layers"] = {"reconstruction": ["decoder", 1, 0]}

    def as_bare_triple(config):  # how Keras 3.11+ writes a single output
        config["config"]["output_layers"] = ["decoder", 1, 0]

    for edit, location in (
        (as_dict, "/config/output_layers/reconstruction"),
        (as_bare_triple, "/config/output_layers"),
    ):
        path = _with_config(source, tmp_path / f"{edit.__name__}.keras", edit)
        found = [f for f in check_archive(path).findings if f.code == "KR304"]
        assert [f.location for f in found] == [location]
        result = fix_archive(path, tmp_path / f"{edit.__name__}_fixed.keras")
        assert "KR304" in codes_of(result.changes)


def test_a_later_call_read_as_the_output_is_called_silently_wrong(tmp_path):
    def first_call_as_output(config):
        config["config"]["output_layers"] = [["sub", 1, 0]]  # call 1 of 2

    source = RELEASES / "keras-3.6.0" / f"{SHARED}.keras"
    path = _with_config(source, tmp_path / "first.keras", first_call_as_output)
    found = [f for f in check_archive(path, "3.0").findings if f.code == "KR304"]
    assert len(found) == 1 and "silently returns the output of call 2" in found[0].message


# -- proof in the releases that fail, and in those that read it right


@pytest.mark.releases
@pytest.mark.parametrize(
    "saved_by,loader", [("3.0.5", "3.0.0"), ("3.0.5", "3.0.5"), ("3.2.1", "3.2.1")]
)
def test_the_repaired_autoencoder_loads_in_the_release_that_fails(saved_by, loader, tmp_path):
    from releases import probe

    original = RELEASES / f"keras-{saved_by}" / f"{AUTOENCODER}.keras"
    reference = original.with_suffix(".npz")
    before = probe(loader, original, reference)
    assert before["status"] == "load_error", before
    assert before["exception"] == "IndexError", before
    fixed = tmp_path / "fixed.keras"
    assert fix_archive(original, fixed, Options(keras=loader)).left == []
    for release in (loader, "3.3.3", "3.15.1"):
        after = probe(release, fixed, reference, compare_with=original)
        assert_matches_reference(after, release)
        if release == loader:
            assert after["compared"]["status"] == "load_error", after
        else:
            assert_identical_to_original(after, release)


@pytest.mark.releases
@pytest.mark.parametrize("saved_by", ["3.0.5", "3.2.1", "3.6.0"])
def test_the_repaired_shared_submodel_loads_in_every_release(saved_by, tmp_path):
    from releases import probe

    original = RELEASES / f"keras-{saved_by}" / f"{SHARED}.keras"
    reference = original.with_suffix(".npz")
    fixed = tmp_path / "fixed.keras"
    assert fix_archive(original, fixed, Options(keras="3.0")).left == []
    for release in ("3.0.5", "3.2.1", "3.3.3", "3.6.0", "3.15.1"):
        after = probe(release, fixed, reference, compare_with=original)
        assert_matches_reference(after, release)
        if release != "3.15.1":  # KR301 (and KR304 before 3.3) fail there
            assert after["compared"]["status"] == "load_error", (release, after)
        else:
            assert_identical_to_original(after, release)
