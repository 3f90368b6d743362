"""The run store's tables (SQLAlchemy Core, so a PostgreSQL URL can stand where the SQLite file stands).

One database per run. Besides these tables the same SQLite file holds `responses` (the run's LM
response cache, `prompthone.lm.cache`), `scores` (the evaluator's score cache) and, for MIPRO, Optuna's
own tables. Everything is plain columns and JSON text: `sqlite3 run.sqlite` is enough to read a run.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, Integer, MetaData, String, Table, Text

metadata = MetaData()

run = Table(
    "ph_run",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("status", String(16), nullable=False),  # running | completed | failed
    Column("config", Text, nullable=False),  # JSON: what was asked (task, optimizer, settings, models, ...)
    Column("manifest", Text, nullable=False),  # JSON: versions, model and data hashes, seeds
    Column("result", Text),  # JSON: scores, stopped_by, usage; set when the run ends
)

candidates = Table(
    "ph_candidates",
    metadata,
    Column("hash", String(64), primary_key=True),
    Column("json", Text, nullable=False),  # Candidate.to_json(): every module's instruction and demos
    Column("first_seen", Float, nullable=False),
)

trials = Table(
    "ph_trials",
    metadata,
    Column("idx", Integer, primary_key=True),  # order in which the optimizer scored candidates
    Column("candidate", String(64), nullable=False),
    Column("score", Float),
    Column("n", Integer, nullable=False),  # examples scored
    Column("full", Boolean, nullable=False),  # whole validation set (True) or a minibatch
    Column("best", Float),  # best full-validation score so far
    Column("info", Text),  # JSON: method-specific (step, trial number, parent, ...)
    Column("ts", Float, nullable=False),
    # the process ("host:pid") that computed the trial's evaluation (most of its examples): a run done by
    # workers shows who did what; added after the first runs were stored
    Column("worker", String(300)),
)

lm_calls = Table(
    "ph_lm_calls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("role", String(16), nullable=False),  # task | proposer | judge | teacher
    Column("model", String(256), nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("cost_usd", Float, nullable=False),
    Column("latency_s", Float, nullable=False),
    Column("cached", Boolean, nullable=False),
    Column("finish_reason", String(16)),
    Column("cache_key", String(64)),  # the response is in `responses` under this key
    # prompt tokens the backend took from its KV cache (None: it did not say, or a cache hit); added
    # after the first runs were stored, so older stores gain it when opened for writing
    Column("reused_prompt_tokens", Integer),
    # the process ("host:pid") that made the call: several processes (workers) may work on one run
    Column("worker", String(300)),
)

#: columns added to a table after runs were stored with it: (table, column), added on open if missing
ADDED_COLUMNS = ((lm_calls, "reused_prompt_tokens"), (lm_calls, "worker"), (trials, "worker"))

events = Table(
    "ph_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("data", Text, nullable=False),  # JSON
)

lock = Table(
    "ph_lock",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1: one process works on a run at a time
    Column("token", String(64), nullable=False),  # the holder's own random id (compare-and-swap on take-over)
    Column("pid", Integer, nullable=False),
    Column("host", String(256), nullable=False),
    Column("proc_start", String(32)),  # the holder's start as its OS counts it, so a reused pid is not it
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),  # refreshed while the holder runs (other hosts' liveness)
    Column("command", Text),
)
