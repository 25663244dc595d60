"""Where the file-based data sets are looked for, and the error that says so when they are not there.

Search order (the first directory that holds every file wins; see :func:`search_dirs`):

1. ``root=`` when given, and then only ``root`` and its usual sub-folders (``root/``, ``root/<name>/``,
   torchvision's ``root/MNIST/raw``, ``root/FashionMNIST/raw``, ``root/cifar-10-batches-py``, ...);
2. otherwise ``$FLATMINIMA_DATA`` (when set and non-empty) and its sub-folders, then ``./data`` and its
   sub-folders, then the system locations ``/usr/share/datasets/<name>`` (where Debian's
   ``dataset-fashion-mnist`` installs Fashion-MNIST; ``make data`` installs it; the same scheme holds for
   ``mnist`` and ``cifar10``, which no package installs). ``$FLATMINIMA_SYSTEM_DATA`` replaces the system base
   directories (``os.pathsep``-separated; empty: no system location, as the test suite sets it).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataNotFoundError

ENV_VAR = "FLATMINIMA_DATA"
SYSTEM_ENV_VAR = "FLATMINIMA_SYSTEM_DATA"
DEFAULT_ROOT = "data"
SYSTEM_ROOTS = ("/usr/share/datasets",)
SUBDIRS = {
    "mnist": ("", "mnist", "MNIST", "mnist/raw", "MNIST/raw"),
    "fashion-mnist": (
        "",
        "fashion-mnist",
        "fashion_mnist",
        "FashionMNIST",
        "fashion-mnist/raw",
        "FashionMNIST/raw",
    ),
    "cifar10": (
        "",
        "cifar-10-batches-py",
        "cifar10",
        "cifar10/cifar-10-batches-py",
        "CIFAR10",
        "CIFAR10/cifar-10-batches-py",
    ),
}
SYSTEM_SUBDIRS = {
    "mnist": ("mnist",),
    "fashion-mnist": ("fashion-mnist",),
    "cifar10": ("cifar10", "cifar10/cifar-10-batches-py"),
}
# Printed when Fashion-MNIST is missing: the one set a package manager can install here.
INSTALL_HINTS = {"fashion-mnist": " On Debian/Ubuntu `make data` installs it (dataset-fashion-mnist)."}


def system_roots() -> list[Path]:
    """``$FLATMINIMA_SYSTEM_DATA`` split on ``os.pathsep`` if set (empty: none), else the default bases."""
    value = os.environ.get(SYSTEM_ENV_VAR)
    if value is None:
        return [Path(p) for p in SYSTEM_ROOTS]
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p]


def search_dirs(name: str, root: str | Path | None) -> list[Path]:
    """Absolute directories searched for data set ``name``, in order, without repeats."""
    if root is not None:
        bases, system = [Path(root).expanduser()], []
    else:
        env = os.environ.get(ENV_VAR)
        bases = ([Path(env).expanduser()] if env else []) + [Path(DEFAULT_ROOT)]
        system = system_roots()
    dirs = [b / s if s else b for b in bases for s in SUBDIRS[name]]
    dirs += [b / s for b in system for s in SYSTEM_SUBDIRS[name]]
    return list(dict.fromkeys(d.absolute() for d in dirs))


def resolve(directory: Path, filename: str, allow_gz: bool) -> Path | None:
    """``directory/filename`` or, when ``allow_gz``, ``directory/filename.gz``: the first that is a file."""
    for candidate in (filename, f"{filename}.gz") if allow_gz else (filename,):
        if (directory / candidate).is_file():
            return directory / candidate
    return None


def complete_dirs(dirs: list[Path], files: tuple[str, ...], allow_gz: bool) -> list[tuple[Path, list[Path]]]:
    """Each directory of ``dirs`` that holds every one of ``files``, with their paths (in ``files`` order)."""
    found = []
    for directory in dirs:
        paths = [resolve(directory, f, allow_gz) for f in files]
        if all(p is not None for p in paths):
            found.append((directory, [p for p in paths if p is not None]))
    return found


def not_found(name: str, files: tuple[str, ...], searched: list[Path], allow_gz: bool) -> DataNotFoundError:
    """The error naming the files expected and every directory searched."""
    gz = " (each optionally gzipped, .gz)" if allow_gz else ""
    return DataNotFoundError(
        f"data set {name!r} not found: expected the files {', '.join(files)}{gz} together in one of the "
        f"directories {', '.join(str(d) for d in searched)}. Put them there, or point root= or the "
        f"{ENV_VAR} environment variable at the directory that holds them.{INSTALL_HINTS.get(name, '')}"
    )
