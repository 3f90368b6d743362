"""What a run needs to be reproduced: versions, model identities, data hashes, seeds."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

from prompthone.data.example import Example

PACKAGES = ("prompthone", "openai", "llama-cpp-python", "optuna", "bm25s", "rich", "sqlalchemy", "numpy")


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def examples_sha256(examples: Iterable[Example]) -> str:
    """A content hash of examples in order: the same data gives the same hash on every machine."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps(ex.to_dict(), sort_keys=True, ensure_ascii=False, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()


def build_manifest(
    *, models: Mapping[str, str], splits: Mapping[str, list[Example]], seed: int, extra: Mapping[str, Any] = ()
) -> dict[str, Any]:
    """`models` maps a role to `LM.identity` (for embedded models it carries the GGUF sha256)."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "models": dict(models),
        "data": {
            name: {"n": len(exs), "sha256": examples_sha256(exs), "ids_head": [e.id for e in exs[:5]]}
            for name, exs in splits.items()
        },
        "seed": seed,
        **dict(extra),
    }
