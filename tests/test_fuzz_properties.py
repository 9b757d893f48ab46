"""Whatever the bytes of an archive are, every command ends with exit status 0, 1
or 2, without a traceback, in bounded time and memory (issue 14).

People run kerasrepair on archives they did not make. Mutants of real archives
from fixtures/ (`fuzz/mutations.py`: zip bytes and fields, config.json and
metadata.json, the HDF5 weights, the `.npz` weights) go through `inspect`,
`inspect --json`, `check`, `check --keras 3.0`, `fix -o` and `fix --keras 3.0 -o`
in this process, and each must keep the properties of `fuzz/harness.py`: no
exception escapes; exit 2 is one line `kerasrepair: error: ...` on stderr, nothing
on stdout, no file written; a file `fix` writes reads back; no temporary file is
left; the input is not changed; each command ends within 20 s and grows the peak
RSS by less than 512 MiB. A sample runs as real processes under a memory limit.

Hypothesis draws the mutations, derandomized: CI runs the same examples every
time. Locally, run many more, and shrink a failure to its smallest mutant:

    KERASREPAIR_FUZZ_EXAMPLES=2000 KERASREPAIR_FUZZ_SHRINK=1 pytest tests/test_fuzz_properties.py

A failing example's mutant is saved under $TMPDIR/kerasrepair-fuzz/ (the failure
says where). The coverage-guided targets of `fuzz/targets.py` (run for hours by
`fuzz/run.py atheris`) run here over their seeds and a few mutants, so they
cannot rot.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from conftest import ROOT

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz import harness, mutations, targets  # noqa: E402

# objects.py raises the recursion limit once, for jsonschema (and never lowers it):
# hypothesis says it will not reset a limit changed during a test
pytestmark = pytest.mark.filterwarnings("ignore:The recursion limit will not be reset")

EXAMPLES = int(os.environ.get("KERASREPAIR_FUZZ_EXAMPLES", "80"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=90),  # six commands; each also has its own 20 s limit
    derandomize=True,
    database=None,
    phases=tuple(Phase)
    if os.environ.get("KERASREPAIR_FUZZ_SHRINK")
    else (Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FAILURES = Path(tempfile.gettempdir()) / "kerasrepair-fuzz"


class HypothesisDraw:
    """A mutator's choices, drawn by hypothesis (and printed with a failing example)."""

    def __init__(self, data):
        self.data = data

    def integer(self, low, high):
        return self.data.draw(st.integers(low, high))

    def choice(self, options):
        return self.data.draw(st.sampled_from(list(options)))

    def raw(self, max_size):
        return self.data.draw(st.binary(max_size=max_size))


def assert_every_command_holds(kind: str, data) -> None:
    draw = HypothesisDraw(data)
    base = draw.choice(harness.bases_for(kind))
    mutant, what = mutations.MUTATORS[kind]((harness.FIXTURES / base).read_bytes(), draw)
    note(f"{base}: {what}")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"mutant{Path(base).suffix}"
        path.write_bytes(mutant)
        violations = harness.run_commands(path, Path(directory))
    if not violations:
        return
    FAILURES.mkdir(exist_ok=True)
    saved = FAILURES / f"{kind}-{hashlib.sha256(mutant).hexdigest()[:12]}{Path(base).suffix}"
    saved.write_bytes(mutant)
    for violation in violations:
        note(str(violation))
    note(f"the mutant: {saved}")
    crash = next((v for v in violations if v.exception is not None), None)
    if crash is not None:  # raised as it was: hypothesis tells bugs apart by where they raise
        raise crash.exception
    raise AssertionError("; ".join(str(v) for v in violations) + f" (the mutant: {saved})")


@FUZZ
@given(st.data())
def test_zip_byte_mutants(data):
    """Bytes flipped, inserted, deleted in the headers, the central directory, the
    end record, and in deflate, bzip2 and LZMA streams."""
    assert_every_command_holds("zip_bytes", data)


@FUZZ
@given(st.data())
def test_zip_field_mutants(data):
    """Version needed, flags (encryption, strong encryption, UTF-8 names), methods,
    sizes, CRCs, offsets, name lengths, extra fields and zip64 records."""
    assert_every_command_holds("zip_fields", data)


@FUZZ
@given(st.data())
def test_config_mutants(data):
    """Any JSON value of any type at any place of config.json or metadata.json (a
    legacy .h5's model_config), keys dropped and added, layers swapped and copied,
    deep nesting, models nested in themselves, duplicate keys, huge integers,
    NaN, bytes that are not UTF-8."""
    assert_every_command_holds("config", data)


@FUZZ
@given(st.data())
def test_hdf5_mutants(data):
    """Groups and datasets of the weights deleted, renamed, reshaped, retyped,
    emptied (an empty optimizer/vars/0), turned into groups; links, external
    storage, virtual datasets, shape bombs, odd attributes."""
    assert_every_command_holds("hdf5", data)


@FUZZ
@given(st.data())
def test_npz_mutants(data):
    """`.npy` headers (shapes, dtypes, versions, garbage), member names, truncated
    members, and the inner zip's fields and bytes."""
    assert_every_command_holds("npz", data)


# -- real processes, under a memory limit

ADDRESS_SPACE = 2 << 30  # a runaway allocation fails here instead of taking the machine
PEAK_RSS = 300 << 20  # the tool on a small archive takes ~55 MiB
SAMPLE = [(kind, number) for kind in mutations.MUTATORS for number in range(3)]


@pytest.mark.parametrize(("kind", "number"), SAMPLE)
def test_mutants_in_a_process_within_memory_and_time(kind, number, tmp_path):
    draw = mutations.RandomDraw(number)
    base = draw.choice(harness.bases_for(kind))
    mutant, what = mutations.MUTATORS[kind]((harness.FIXTURES / base).read_bytes(), draw)
    path = tmp_path / f"mutant{Path(base).suffix}"
    path.write_bytes(mutant)
    command = harness.COMMANDS[(number + len(kind)) % len(harness.COMMANDS)]
    args = [*command, str(tmp_path / "out" / "fixed.keras")] if command[-1] == "-o" else command
    (tmp_path / "out").mkdir()
    status, peak, stdout, stderr = _run_limited([*args, str(path)], timeout=60)
    context = f"kerasrepair {' '.join(command)} on {base} ({what}): exit {status}, {stderr!r:.400}"
    assert status in (0, 1, 2), context
    assert "Traceback" not in stdout + stderr, context
    assert "internal error" not in stderr, context
    if status == 2:
        assert stderr.startswith("kerasrepair: error: ") and stderr.count("\n") == 1, context
        assert stdout == "" and not list((tmp_path / "out").iterdir()), context
    assert peak < PEAK_RSS, f"peak RSS {peak >> 20} MiB: {context}"


# The command in a child that limits its own address space and, as it exits, writes
# its peak RSS (VmHWM): the rusage of a child counts the pages of the parent it
# was forked from (hundreds of MiB in a test session that loaded Keras).
LIMITED = """
import atexit, os, resource, runpy, sys
limit = int(os.environ["KERASREPAIR_FUZZ_ADDRESS_SPACE"])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

def peak():
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["KERASREPAIR_FUZZ_PEAK"], "w") as out:
        out.write(kib)

atexit.register(peak)
sys.argv[0] = "kerasrepair"
runpy.run_module("kerasrepair", run_name="__main__", alter_sys=True)
"""


def _run_limited(args: list[str], timeout: float) -> tuple[int, int, str, str]:
    """Exit status, peak RSS (0 when it did not exit by itself), stdout and stderr
    of `kerasrepair ARGS` in a child under ADDRESS_SPACE."""
    with tempfile.TemporaryDirectory() as directory:
        peak_file = Path(directory) / "peak"
        environment = {
            **os.environ,
            "OPENBLAS_NUM_THREADS": "1",
            "KERASREPAIR_FUZZ_ADDRESS_SPACE": str(ADDRESS_SPACE),
            "KERASREPAIR_FUZZ_PEAK": str(peak_file),
        }
        try:
            done = subprocess.run(
                [sys.executable, "-c", LIMITED, *args],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                env=environment,
            )
        except subprocess.TimeoutExpired as e:
            return -signal.SIGKILL, 0, str(e.stdout or ""), str(e.stderr or "")
        peak = int(peak_file.read_text()) * 1024 if peak_file.exists() else 0
    return done.returncode, peak, done.stdout, done.stderr


# -- the fuzz targets, without atheris


class _TooLong(BaseException):
    pass


def _within(seconds: float, function, data: bytes) -> None:
    def alarm(*_):
        raise _TooLong

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    finished = False
    try:
        function(data)
        finished = True
    except _TooLong:
        pass  # failed below, without the interrupted frames
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if not finished:
        pytest.fail(f"{function.__name__} still running after {seconds} s on {data[:60]!r}")


@pytest.mark.parametrize("target", sorted(targets.TARGETS))
def test_fuzz_targets_hold_on_their_seeds_and_mutants(target):
    """Each target takes its seed corpus and byte mutants of it raising nothing
    but the tool's own errors (which the target treats as expected)."""
    function = targets.TARGETS[target]
    seeds = list(targets.seeds(target))
    assert len(seeds) >= 5, "the seed corpus is built from the fixtures"
    draw = mutations.RandomDraw(14)
    for _, data in seeds:
        _within(10, function, data)
        buffer = bytearray(data)
        for _ in range(3):
            mutations.mutate_bytes(buffer, draw)
        _within(10, function, bytes(buffer))


def test_marshal_reader_bounds_code_objects_that_share_children():
    """3 KB of marshal data whose code objects hold one child twice, 28 levels
    deep: the tree they describe has 2**28 leaves, and must not be walked as one."""
    data = targets._shared_children(depth=28)
    assert len(data) < 4000
    _within(10, targets.marshal_reader, data)


# -- what fuzzing found in the rules, kept fixed
#
# Each: a fixture whose config.json (or metadata.json) is edited as a mutant was
# that made a rule raise; every command must now hold on it.


def _layers(config):
    return config["config"]["layers"]


def _metric_config_list(config, metadata):  # KR702: a legacy training config's metrics
    wrapper = {"class_name": "MeanMetricWrapper", "config": ["linear", 1, None]}
    config["compile_config"] = {"loss": "mse", "metrics": [[wrapper]], "optimizer_config": None}


def _sequential_without_layers(config, metadata):  # KR306: a Sequential of nothing
    config["config"]["layers"] = []


def _lambda_function_config_number(config, metadata):  # KR502, KR503
    _layers(config)[1]["config"]["function"]["config"] = 7


def _slash_name_config_number(config, metadata):  # KR709: the name outside the config
    _layers(config)[1]["name"] = "block1/dense"
    _layers(config)[1]["config"] = 7


def _inbound_nodes_number(config, metadata):  # KR7xx: a Keras 2 node list
    _layers(config)[1]["inbound_nodes"] = 7


def _object_in_a_module(config, metadata):  # KR701: an object inside one it rewrites
    initializer = _layers(config)[1]["config"]["kernel_initializer"]
    initializer["module"] = [{"module": {}, "class_name": "Dense", "config": {}}]


def _argument_name_with_slash(config, metadata):  # KR601: a JSON pointer of that name
    layer = _layers(config)[1]["config"]
    layer["offs/et"] = layer.pop("offset")


def _class_name_list(config, metadata):  # every class lookup (schema.resolve)
    _layers(config)[1].update(class_name=["Dense"], module=None)


def _no_version_and_errors_left(config, metadata):  # fix: what is left, no release
    metadata.pop("keras_version")
    _layers(config)[1]["class_name"] = "NoSuchLayer"


REGRESSIONS = {
    "metric-config-list": ("keras2/mlp_trained.keras", _metric_config_list),
    "sequential-without-layers": ("models/sequential_mlp.keras", _sequential_without_layers),
    "lambda-function-config-number": (
        "releases/keras-3.0.5/lambda_global.keras",
        _lambda_function_config_number,
    ),
    "slash-name-config-number": ("keras2/slash_names.keras", _slash_name_config_number),
    "inbound-nodes-number": ("keras2/nested_sequential.keras", _inbound_nodes_number),
    "object-in-a-module": ("keras2/mlp_trained.keras", _object_in_a_module),
    "argument-name-with-slash": (
        "releases/keras-3.0.5/numpy_rescaling.keras",
        _argument_name_with_slash,
    ),
    "class-name-list": ("models/functional_nested_shared.keras", _class_name_list),
    "no-version-and-errors-left": ("models/sequential_mlp.keras", _no_version_and_errors_left),
}


@pytest.mark.parametrize("case", sorted(REGRESSIONS))
def test_what_fuzzing_found_in_the_rules_stays_fixed(case, tmp_path):
    base, edit = REGRESSIONS[case]
    with zipfile.ZipFile(harness.FIXTURES / base) as source:
        entries = {info.filename: source.read(info) for info in source.infolist()}
    config, metadata = json.loads(entries["config.json"]), json.loads(entries["metadata.json"])
    edit(config, metadata)
    entries["config.json"], entries["metadata.json"] = json.dumps(config), json.dumps(metadata)
    path = tmp_path / "mutant.keras"
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    violations = harness.run_commands(path, tmp_path)
    assert not violations, "; ".join(str(v) for v in violations)


def test_a_lambda_patcher_that_hangs_or_answers_nothing_is_a_patch_error(monkeypatch):
    """KR501's child patches the code: one that runs past its time or prints no
    JSON is a repair that could not be made (exit 1), not a crash."""
    from kerasrepair.passes import lambda_missing_global

    def hangs(*args, timeout, **kwargs):
        raise subprocess.TimeoutExpired(args[0], timeout)

    monkeypatch.setattr(lambda_missing_global.subprocess, "run", hangs)
    with pytest.raises(lambda_missing_global.LambdaPatchError, match="ran past 60 s"):
        lambda_missing_global.patch_code("", "3.11", {"CONV_WIDTH": "3"})

    def answers(*args, **kwargs):
        return subprocess.CompletedProcess(args[0], 0, stdout="Segmentation", stderr="")

    monkeypatch.setattr(lambda_missing_global.subprocess, "run", answers)
    with pytest.raises(lambda_missing_global.LambdaPatchError, match="answered no code"):
        lambda_missing_global.patch_code("", "3.11", {"CONV_WIDTH": "3"})
