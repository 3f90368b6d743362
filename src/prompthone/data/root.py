"""Where the benchmark files live: an explicit path, PROMPTHONE_DATA_DIR, or a `shared/data` folder nearby.

Benchmark files are not shipped in the package (sizes and licenses), so readers look them up at run
time. The walk up from the working directory and from the installed package finds the layout used
here (a checkout at `<top>/main` with the data at `<top>/shared/data`) without any configuration.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from prompthone.data.errors import DataError, DataRootNotFoundError

ENV_VAR = "PROMPTHONE_DATA_DIR"
KNOWN_DATASETS = ("gsm8k", "bbh", "hotpotqa", "sst2", "trec", "multiarith")


def find_data_root(root: str | Path | None = None, *, search_from: Sequence[str | Path] | None = None) -> Path:
    """The benchmark data folder: `root` if given, else $PROMPTHONE_DATA_DIR, else the first
    `<ancestor>/shared/data` holding a known dataset folder, walking up from each of `search_from`
    (default: the working directory, then this package's location).
    """
    if root is not None:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise DataRootNotFoundError("the data root given is not a directory", path=path)
        return path
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise DataRootNotFoundError(f"{ENV_VAR} points to {path}, which is not a directory")
        return path
    starts = [Path(p) for p in search_from] if search_from is not None else [Path.cwd(), Path(__file__)]
    looked: list[str] = []
    for start in starts:
        start = start.resolve()
        for ancestor in [start, *start.parents]:
            candidate = ancestor / "shared" / "data"
            if candidate.is_dir() and any((candidate / d).is_dir() for d in KNOWN_DATASETS):
                return candidate
        looked.append(str(start))
    raise DataRootNotFoundError(
        f"no benchmark data folder found (looked for shared/data above {' and '.join(looked)}); "
        f"set {ENV_VAR} to the folder that holds {', '.join(f'{d}/' for d in KNOWN_DATASETS)} "
        "or pass root="
    )


def dataset_file(root: str | Path | None, dataset: str, *parts: str) -> Path:
    """Path of one file of a dataset under the data root, or a `DataError` naming the expected path."""
    path = find_data_root(root).joinpath(dataset, *parts)
    if not path.is_file():
        raise DataError(f"file not found; expected the {dataset} data file here", path=path)
    return path


__all__ = ["ENV_VAR", "KNOWN_DATASETS", "dataset_file", "find_data_root"]
