"""Test helpers that ship with prompthone, so its own tests and its users' tests share them.

`FakeOpenAIServer` is a local OpenAI-compatible endpoint with scripted faults: it lets the LM layer's
retry, timeout and error mapping be tested through the real `openai` SDK and real HTTP, without a
network or a model.

Names are loaded on first use, so that `python -m prompthone.testing.fake_openai_server` does not
import the module twice (runpy warns when a package has already imported the module it runs).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prompthone.testing.fake_openai_server import (
        FakeOpenAIServer,
        FakeOpenAIServerProcess,
        Fault,
        RecordedRequest,
        default_answer,
    )

__all__ = ["FakeOpenAIServer", "FakeOpenAIServerProcess", "Fault", "RecordedRequest", "default_answer"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("prompthone.testing.fake_openai_server"), name)
    raise AttributeError(f"module 'prompthone.testing' has no attribute {name!r}")
