"""The run store: one database per run holding its config, manifest, candidates, trials, LM calls and events."""

from prompthone.store.manifest import build_manifest, examples_sha256
from prompthone.store.run_store import (
    CACHE_DB,
    RUN_DB,
    STORE_POINTER,
    RunStore,
    database_url,
    is_run_folder,
    point_to_store,
)

__all__ = [
    "CACHE_DB",
    "RUN_DB",
    "STORE_POINTER",
    "RunStore",
    "build_manifest",
    "database_url",
    "examples_sha256",
    "is_run_folder",
    "point_to_store",
]
