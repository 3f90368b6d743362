"""Bootstrapping tolerates wrong answers, unreadable replies and an example's error; never a teacher that
cannot answer at all (a refused key, a server down for every call)."""

from __future__ import annotations

import pytest

from prompthone.evaluate import EvaluationError
from prompthone.lm import AuthenticationError, ServerError
from prompthone.optimize.proposers import bootstrap_demos
from test_mipro_world import make_setup


async def test_a_refused_teacher_key_stops_bootstrapping_at_once():
    setup, tb, _ = make_setup(task=lambda req: AuthenticationError("refused the API key"), n_train=40)
    setup.evaluator.concurrency = 4
    with pytest.raises(AuthenticationError, match="refused the API key"):
        await bootstrap_demos(setup)
    assert len(tb.requests) <= 4  # the runs in flight, not the whole trainset


async def test_a_teacher_that_errors_on_every_run_stops_bootstrapping_with_its_first_error():
    setup, tb, _ = make_setup(task=lambda req: ServerError("server down"), n_train=40)
    setup.evaluator.concurrency = 4
    with pytest.raises(EvaluationError, match=r"bootstrapping: all 4 teacher runs .*ServerError: server down"):
        await bootstrap_demos(setup)
    assert len(tb.requests) == 4  # the first chunk told enough
