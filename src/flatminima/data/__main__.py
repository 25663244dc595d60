"""``python -m flatminima.data [NAME ...]``: where each file-based data set is found and whether it verifies.

One line per set (default: mnist, fashion-mnist, cifar10); exit status 0 when every named set is found and
matches the published checksums, 1 otherwise, 2 for an unknown name. ``make data`` runs it after installing.
"""

from __future__ import annotations

import sys

from ..errors import DataNotFoundError, FlatminimaError
from .files import cifar10, fashion_mnist, mnist
from .request import SourceRequest

FILE_SETS = {"mnist": mnist, "fashion-mnist": fashion_mnist, "cifar10": cifar10}


def main(argv: list[str]) -> int:
    names = argv or list(FILE_SETS)
    unknown = [n for n in names if n not in FILE_SETS]
    if unknown:
        print(f"error: unknown file-based data set {unknown[0]!r}; choose from {', '.join(FILE_SETS)}")
        return 2
    ok = True
    for name in names:
        try:
            raw = FILE_SETS[name](SourceRequest())
        except DataNotFoundError as exc:
            print(f"{name}: not found. {exc}")
            ok = False
            continue
        except FlatminimaError as exc:
            print(f"{name}: unusable: {exc}")
            ok = False
            continue
        sizes = f"{len(raw.labels_train)} train / {len(raw.labels_test)} test"
        print(f"{name}: verified, the official files ({sizes}) in {raw.provenance['directory']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
