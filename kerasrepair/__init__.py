"""kerasrepair: inspect, check and repair Keras `.keras` archives as files.

The Python API mirrors the command line::

    from kerasrepair import open_archive, inspect_archive, write_archive

    report = inspect_archive("model.keras")          # what `inspect --json` prints
    result = fix_archive("broken.keras", "fixed.keras")  # repair, write, check
    for line in batch(["zoo/"], BatchSettings(output_dir="fixed-zoo")):  # a model zoo
        print(line["path"], line["status"])
    with open_archive("model.keras") as archive:     # raises ArchiveError if unsafe
        config = archive.config
        tree = archive.weights()                     # shapes and dtypes, no data
        write_archive(archive, "copy.keras", {"config.json": new_bytes})

Names are imported on first use, so that a command loads only what it needs
(h5py alone takes about 0.2 s to import).
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Archive": "archive",
    "Limits": "archive",
    "open_archive": "archive",
    "ArchiveError": "errors",
    "inspect_archive": "inspection",
    "check_archive": "check",
    "fix_archive": "api",
    "batch": "zoo",
    "BatchSettings": "zoo",
    "RepairError": "errors",
    "WriteError": "errors",
    "write_archive": "writer",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'kerasrepair' has no attribute {name!r}")
