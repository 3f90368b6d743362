"""A run's own response and score caches: tables in the run's store, wherever the store is.

In a run folder's `run.sqlite`, or in the run's database on a server, where every process working on
the run (the leader and its workers) shares them: an answer bought by one is never bought again by
another. A server run folder made before the caches moved to the server keeps them in its
`cache.sqlite`; the first resume copies them to the server and renames the file (`*.copied`), so
nothing the run paid for is bought again and nothing is copied twice.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prompthone.evaluate import ScoreCache
from prompthone.lm import ResponseCache
from prompthone.store import CACHE_DB, RunStore

log = logging.getLogger(__name__)

#: what an older run folder's `cache.sqlite` is renamed to once its rows are on the server
COPIED_SUFFIX = ".copied"


def open_run_caches(store: RunStore, run_dir: Path, shared: ResponseCache | None) -> tuple[ResponseCache, ScoreCache]:
    """The run's response cache (reading through to the user's `shared` one) and score cache."""
    where: str | Path = store.path or store.url
    responses = ResponseCache(where, fallback=shared, owns_file=False)  # never moved aside: it holds the run
    scores = ScoreCache(where)
    old = run_dir / CACHE_DB
    if store.path is None and old.is_file():
        _copy_old_caches(old, responses, scores)
    return responses, scores


def _copy_old_caches(old: Path, responses: ResponseCache, scores: ScoreCache) -> None:
    n_responses, n_scores = responses.copy_from(old), scores.copy_from(old)
    for suffix in ("", "-wal", "-shm"):  # after the copy, whole: the file stays for anyone who wants it
        part = Path(f"{old}{suffix}")
        if part.exists():
            part.replace(Path(f"{old}{COPIED_SUFFIX}{suffix}"))
    log.info("copied %d answers and %d scores from %s to the run store; the file is now %s%s",
             n_responses, n_scores, old, old.name, COPIED_SUFFIX)  # fmt: skip
