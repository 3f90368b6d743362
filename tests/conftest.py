"""Shared test setup: every test gets its own response cache, never the user's."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_response_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTHONE_RESPONSE_CACHE", str(tmp_path / "responses.sqlite"))
    monkeypatch.delenv("PROMPTHONE_NO_CACHE", raising=False)
