"""Whether a model string can be used here, without loading or contacting anything (for `--dry-run`).

A dry run must work on a machine that has not installed the embedded models yet: it says which models
the run needs and what is missing, instead of assembling a 491 MB file or failing on the first one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from prompthone.lm.errors import ConfigError
from prompthone.lm.model_string import parse_model_string


@dataclass(frozen=True)
class ModelStatus:
    model: str
    ready: bool
    #: what a person reads: "installed", "not installed: run ...", "server at URL (not contacted)"
    note: str


def model_status(model: str) -> ModelStatus:
    """Can `model` be used as it stands? Nothing is loaded, assembled or sent."""
    try:
        spec = parse_model_string(model)
    except ConfigError as exc:
        return ModelStatus(model, False, str(exc))
    if spec.provider == "local":
        from prompthone.lm.local.assemble import install_command, is_installed
        from prompthone.lm.local.catalog import lookup

        embedded = lookup(spec.model)
        if embedded is not None:
            if is_installed(embedded):
                return ModelStatus(model, True, "embedded model, installed")
            return ModelStatus(model, False, f"embedded model, not installed: run `{install_command(embedded)}`")
        path = Path(spec.model).expanduser()
        if path.is_file():
            return ModelStatus(model, True, f"GGUF file {path}")
        return ModelStatus(model, False, f"GGUF file not found: {path}")
    if spec.base_url:
        return ModelStatus(model, True, f"OpenAI-compatible server at {spec.base_url} (not contacted)")
    if os.environ.get("OPENAI_API_KEY", "").strip():
        return ModelStatus(model, True, "OpenAI API, OPENAI_API_KEY is set (not contacted)")
    return ModelStatus(model, False, "OpenAI API, but OPENAI_API_KEY is not set")


__all__ = ["ModelStatus", "model_status"]
