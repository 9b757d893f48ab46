"""fsspec URLs for `batch`: sources and OUTDIR on `s3://`, `gs://`, `hf://`,
`memory://`... (`file://` is the local path it names).

Only a URL ever imports fsspec: a plain path never does, and the tool needs
fsspec only for URLs (`pip install fsspec`, plus the protocol's package, e.g.
s3fs). The repair itself always runs on local files: an archive at a URL is
streamed to a temporary local copy first, and a repaired archive is written
to a temporary local file, then streamed to its URL; both in chunks of
`CHUNK` bytes, so memory does not grow with the archive's size.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

SUFFIXES = (".keras", ".h5", ".hdf5")
CHUNK = 1 << 20
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
_MAGIC = re.compile(r"[*?\[]")


def is_url(name: object) -> bool:
    """`scheme://...` (a Windows drive `C:\\` or a plain path is not)."""
    return isinstance(name, str) and bool(_URL.match(name))


def filesystem(url: str):
    """(fsspec filesystem, path within it) of `url`; SourceError when fsspec,
    or the package of the URL's protocol, is missing."""
    from .errors import SourceError

    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise SourceError(f"{url}: URLs need fsspec: pip install fsspec") from None
    try:
        return url_to_fs(url)
    except (ImportError, ValueError) as e:  # "Install s3fs to access S3", unknown protocol
        raise SourceError(f"{url}: {e}") from None


def local_path(url: str) -> str | None:
    """The local path a `file://` (or `local://`) URL names; None for any
    other filesystem."""
    fs, path = filesystem(url)
    from fsspec.implementations.local import LocalFileSystem

    return path if isinstance(fs, LocalFileSystem) else None


def join(base: str, relative: str | os.PathLike) -> str:
    """`relative` (a path) under the URL `base`."""
    return base.rstrip("/") + "/" + Path(relative).as_posix().lstrip("/")


def mirrored(url: str, out: str | Path | None) -> str | Path | None:
    """Where the archive at `url` goes under `out` (a URL or a local Path):
    its path on its filesystem (bucket and key for s3://)."""
    if out is None:
        return None
    relative = filesystem(url)[1].lstrip("/")
    return join(out, relative) if isinstance(out, str) else out / relative


def archives(
    url: str, out: str | Path | None, listed: Callable[..., Iterator[tuple]]
) -> Iterator[tuple[str, str | Path | None]]:
    """Each archive under the URL `url` (a directory searched recursively, a
    glob, an archive, or a file listing paths and URLs, read with `listed`)
    and where its repair goes under `out`: a directory's archives keep their
    paths relative to it, others `mirrored`."""
    from .errors import SourceError

    fs, path = filesystem(url)
    if _MAGIC.search(path):
        for match in sorted(fs.glob(path)):
            if match.lower().endswith(SUFFIXES) and fs.isfile(match):
                found = fs.unstrip_protocol(match)
                yield found, mirrored(found, out)
    elif fs.isdir(path):
        root = path.rstrip("/")
        if isinstance(out, str):
            out_fs, out_path = filesystem(out)
            out_path = out_path.rstrip("/")
            if out_fs.protocol == fs.protocol and (
                out_path == root or out_path.startswith(root + "/")
            ):
                raise SourceError(f"{url}: -o {out} is inside it; write elsewhere")
        for found in sorted(fs.find(root)):
            if found.lower().endswith(SUFFIXES):
                relative = posixpath.relpath(found, root)
                yield (
                    join(url, relative),
                    (
                        None
                        if out is None
                        else join(out, relative)
                        if isinstance(out, str)
                        else out / relative
                    ),
                )
    elif fs.isfile(path):
        if path.lower().endswith(SUFFIXES):
            yield url, mirrored(url, out)
        else:
            with fs.open(path, "rt", encoding="utf-8", errors="replace") as lines:
                yield from listed(lines, out)
    else:
        raise SourceError(f"{url}: no such file, directory or match")


def sha256(url: str) -> tuple[str, int]:
    """The digest and size of the file at `url`, read in chunks; OSError when
    it is not a file."""
    fs, path = filesystem(url)
    if not fs.isfile(path):
        raise FileNotFoundError(f"{url}: no such file")
    with fs.open(path, "rb") as f:
        return digest(f)


def digest(f) -> tuple[str, int]:
    """The sha256 and size of what is left to read in `f`, read in chunks."""
    sha, size = hashlib.sha256(), 0
    while chunk := f.read(CHUNK):
        sha.update(chunk)
        size += len(chunk)
    return sha.hexdigest(), size


@contextlib.contextmanager
def local_copy(name: str) -> Iterator[str]:
    """A local file with the content of `name`: a plain path (or a file://
    URL's path) as it is, any other URL streamed to a temporary file (with the
    same name, in a temporary directory) removed on exit."""
    if not is_url(name):
        yield name
        return
    local = local_path(name)
    if local is not None:
        yield local
        return
    fs, path = filesystem(name)
    with tempfile.TemporaryDirectory(prefix="kerasrepair-") as scratch:
        copy = os.path.join(scratch, posixpath.basename(path.rstrip("/")) or "archive")
        with fs.open(path, "rb") as source, open(copy, "wb") as target:
            shutil.copyfileobj(source, target, CHUNK)
        yield copy


@contextlib.contextmanager
def staged(output: str | None) -> Iterator[str | None]:
    """Where to write what goes to `output`: a plain path (or None) as it is;
    for a URL a temporary local path, streamed to the URL when the block ends
    without an exception (if anything was written there)."""
    if output is None or not is_url(output):
        yield output
        return
    local = local_path(output)
    if local is not None:
        yield local
        return
    with tempfile.TemporaryDirectory(prefix="kerasrepair-") as scratch:
        written = os.path.join(scratch, posixpath.basename(output.rstrip("/")) or "archive")
        yield written
        if os.path.exists(written):
            upload(written, output)


def upload(local: str | os.PathLike, url: str) -> None:
    """Stream the local file to `url` (object stores publish it whole when it
    is closed)."""
    fs, path = filesystem(url)
    parent = posixpath.dirname(path)
    if parent and not fs.exists(parent):
        with contextlib.suppress(OSError, NotImplementedError):  # no folders (object stores)
            fs.makedirs(parent, exist_ok=True)
    with open(local, "rb") as source, fs.open(path, "wb") as target:
        shutil.copyfileobj(source, target, CHUNK)
