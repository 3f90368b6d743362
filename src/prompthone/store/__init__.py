"""The run store: one database per run holding its config, manifest, candidates, trials, LM calls and events."""

from prompthone.store.manifest import build_manifest, examples_sha256
from prompthone.store.run_store import RUN_DB, RunStore, database_url

__all__ = ["RUN_DB", "RunStore", "build_manifest", "database_url", "examples_sha256"]
