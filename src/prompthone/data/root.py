"""Where the benchmark files live: an explicit path, PROMPTHONE_DATA_DIR, or the copy shipped in the package.

The public benchmark sets the built-in tasks use ship inside the package (`prompthone/data/datasets/`, with
each set's provenance, license and SHA256SUMS), so a plain clone or an installed wheel runs every task with
no configuration. `PROMPTHONE_DATA_DIR` (or `root=`) points at another folder of the same layout, for
example a newer copy of a dataset.
"""

from __future__ import annotations

import os
from pathlib import Path

from prompthone.data.errors import DataError, DataRootNotFoundError

ENV_VAR = "PROMPTHONE_DATA_DIR"
KNOWN_DATASETS = ("gsm8k", "bbh", "hotpotqa", "sst2", "trec", "multiarith")
SHIPPED_ROOT = Path(__file__).resolve().parent / "datasets"


def find_data_root(root: str | Path | None = None) -> Path:
    """The benchmark data folder: `root` if given, else $PROMPTHONE_DATA_DIR, else the shipped copy."""
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
    if not SHIPPED_ROOT.is_dir():
        raise DataRootNotFoundError(
            f"the benchmark data shipped with prompthone is missing ({SHIPPED_ROOT}); reinstall prompthone "
            f"or set {ENV_VAR} to a folder that holds {', '.join(f'{d}/' for d in KNOWN_DATASETS)}"
        )
    return SHIPPED_ROOT


def dataset_file(root: str | Path | None, dataset: str, *parts: str) -> Path:
    """Path of one file of a dataset under the data root, or a `DataError` naming the expected path."""
    path = find_data_root(root).joinpath(dataset, *parts)
    if not path.is_file():
        raise DataError(f"file not found; expected the {dataset} data file here", path=path)
    return path


__all__ = ["ENV_VAR", "KNOWN_DATASETS", "SHIPPED_ROOT", "dataset_file", "find_data_root"]
