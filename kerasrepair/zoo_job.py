"""One archive of a `batch` run: what is done with it (`Settings`), the job,
and `run_one`, which a worker (a local process, a Dask task) runs on it and
which never raises: whatever goes wrong is the archive's `error` line."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

from . import remote
from .context import Options

# the status of a report line (`duplicate`: given by `zoo.batch`, without a worker)
STATUSES = ("clean", "fixed", "fixable", "unfixable", "error", "duplicate")


@dataclass(frozen=True)
class Settings:
    """What every archive of a run is done with (the report records it)."""

    output_dir: str | None = None  # None: --check-only
    keras: str | None = None
    only: tuple[str, ...] | None = None
    skip: tuple[str, ...] = ()
    unsafe_fixes: bool = False
    copy_clean: bool = False

    @property
    def check_only(self) -> bool:
        return self.output_dir is None

    def key(self) -> dict:
        """What `--resume` compares: an archive done with other settings is done again."""
        return {
            "check_only": self.check_only,
            "keras": self.keras,
            "only": sorted(self.only) if self.only is not None else None,
            "skip": sorted(self.skip),
            "unsafe_fixes": self.unsafe_fixes,
        }


@dataclass(frozen=True)
class Job:
    path: str
    output: str | None  # where its repair goes under OUTDIR
    sha256: str
    size: int


# ------------------------------------------------------------------ one archive


def run_one(job: Job, settings: Settings) -> dict:
    """Check or repair one archive; its report line. Never raises. An archive
    at a URL is repaired from a local copy, its output written to a local file
    then streamed to its URL (`remote`)."""
    from .api import write_result
    from .archive import open_archive
    from .fix import fix
    from .writer import check_output, copy_atomically

    started = time.monotonic()
    record = failed(job, settings, None, 0.0)  # until it is done
    options = Options(unsafe_fixes=settings.unsafe_fixes, keras=settings.keras)
    source = job.path
    try:
        with (
            remote.local_copy(job.path) as source,
            remote.staged(job.output) as output,
            open_archive(source) as archive,
        ):
            if output is not None:  # the input itself, a link, a directory: refused now
                check_output(output, source)
            record["saved_with"] = archive.keras_version
            only = frozenset(settings.only) if settings.only is not None else None
            result = fix(archive, options, only, frozenset(settings.skip))
            record["target"] = result.target
            record["changes"] = [change.to_dict() for change in result.changes]
            found = {f.code for f in result.remaining} | {c.code for c in result.changes}
            record["codes"] = sorted(found)
            if settings.check_only:
                record["status"] = (
                    "unfixable" if result.left else "fixable" if result.changes else "clean"
                )
            elif result.changes:
                os.makedirs(os.path.dirname(output), exist_ok=True)
                write_result(archive, result, output, only or settings.skip)
                record["output"] = job.output if result.output else None
                record["status"] = "unfixable" if result.left else "fixed"
            elif result.left:
                record["status"] = "unfixable"
            else:
                record["status"] = "clean"
                if settings.copy_clean:
                    os.makedirs(os.path.dirname(output), exist_ok=True)
                    copy_atomically(source, output)
                    record["output"] = job.output
    except Exception as e:  # noqa: BLE001 - one archive never stops the run
        record["status"], record["output"] = "error", None
        record["error"] = one_line(e)
        if source != job.path:  # the URL, not the path of its local copy
            record["error"] = record["error"].replace(source, job.path)
    record["seconds"] = round(time.monotonic() - started, 4)
    record["worker_peak_mib"] = _peak_mib()
    return record


def _peak_mib() -> float | None:
    """The peak resident memory of this process so far (a worker's), in MiB."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1 << 20 if sys.platform == "darwin" else 1 << 10), 1)


def one_line(e: Exception) -> str:
    from .errors import ArchiveError, WriteError

    if isinstance(e, ArchiveError | WriteError):
        return str(e)
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def failed(job: Job, settings: Settings, why: str | None, seconds: float) -> dict:
    """The report line of an archive nothing was done with: an `error`, saying
    `why` (or the start of `run_one`'s line)."""
    return {
        "path": job.path,
        "sha256": job.sha256,
        "bytes": job.size,
        "saved_with": None,
        "target": None,
        "status": "error",
        "codes": [],
        "changes": [],
        "output": None,
        "error": why,
        "settings": settings.key(),
        "seconds": round(seconds, 4),
    }
