"""OPRO on numeric problems: parsing, scoring, the exact TSP solver, the shared loop, the plot and the CLI."""

from __future__ import annotations

import itertools
import json
import random
import re

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from prompthone.experiments.opro_numeric import (
    TSP,
    LinearRegression,
    brute_force_tsp,
    held_karp,
    nearest_neighbour,
    plot_run,
    run_numeric,
    tour_length,
)
from prompthone.lm import LM
from prompthone.lm.scripted import ScriptedBackend


def scripted(fn, log: list | None = None) -> LM:
    def respond(req):
        if log is not None:
            log.append(req)
        return fn(req)

    return LM(ScriptedBackend(respond, name="optimizer"), cache=False)


# ---------------------------------------------------------------------------------- linear regression


def test_linreg_data_objective_and_least_squares_optimum():
    p = LinearRegression(15, 14, seed=3)
    assert len(p.xs) == 50 and p.xs[0] == 1.0 and p.xs[-1] == 50.0
    residuals = [y - (15 * x + 14) for x, y in zip(p.xs, p.ys, strict=True)]
    assert 0.3 < np.std(residuals) < 2.0  # unit noise around the true line
    (w, b), value = p.optimum()
    w_np, b_np = np.polyfit(p.xs, p.ys, 1)
    assert w == pytest.approx(w_np) and b == pytest.approx(b_np)
    assert value == pytest.approx(p.evaluate((w_np, b_np)))
    assert value < p.evaluate((15, 14)) < p.evaluate((16, 14))
    assert LinearRegression(15, 14, seed=3).ys == p.ys and LinearRegression(15, 14, seed=4).ys != p.ys


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("I think [15, 14]", (15.0, 14.0)),
        ("first [1, 2] then better: [ -3.5 , 2e1 ]", (-3.5, 20.0)),
        ("w = 16, b = 13.25", (16.0, 13.25)),
        ("w: 2 and b: 3", (2.0, 3.0)),
        ("no numbers here", None),
        ("[15]", None),
    ],
)
def test_linreg_parse(reply, expected):
    assert LinearRegression().parse(reply) == expected


def test_linreg_random_search_baseline_uses_the_evaluations_given():
    p = LinearRegression(15, 14)
    name, sol, value = p.baseline(40, random.Random(0))
    assert "40 evaluations" in name and 10 <= sol[0] <= 20 and 10 <= sol[1] <= 20
    assert value == pytest.approx(p.evaluate(sol))
    _, _, better = p.baseline(4000, random.Random(0))
    assert better <= value


# ------------------------------------------------------------------------------------------------ TSP


@pytest.mark.parametrize("n, seed", [(3, 0), (4, 1), (5, 2), (6, 3), (7, 4), (8, 5)])
def test_held_karp_matches_brute_force(n, seed):
    p = TSP(n, seed=seed)
    tour, length = held_karp(p.dist)
    _, best = brute_force_tsp(p.dist)
    assert length == pytest.approx(best)
    assert sorted(tour) == list(range(n)) and tour[0] == 0
    assert tour_length(tour, p.dist) == pytest.approx(length)


def test_held_karp_on_a_known_square():
    pts = [(0, 0), (1, 1), (1, 0), (0, 1)]  # the optimal tour goes around the unit square: length 4
    p = TSP(points=pts)
    tour, length = held_karp(p.dist)
    assert length == pytest.approx(4.0)
    assert p.key(tour) == p.key((0, 2, 1, 3))


def test_nearest_neighbour_and_tour_length():
    p = TSP(points=[(0, 0), (10, 0), (1, 0), (2, 0)])
    assert nearest_neighbour(p.dist) == (0, 2, 3, 1)
    assert tour_length((0, 2, 3, 1), p.dist) == pytest.approx(20.0)
    name, tour, value = p.baseline(10, random.Random(0))
    assert "nearest neighbour" in name and tour == (0, 2, 3, 1) and value == pytest.approx(20.0)


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("<trace> 0,2,3,1 </trace>", (0, 2, 3, 1)),
        ("Here: <trace>0, 1, 3, 2, 0</trace> is shorter", (0, 1, 3, 2)),  # closed loop written out
        ("<trace>0,1,1,2</trace>", None),  # a city twice, one missing
        ("<trace>0,1,2</trace>", None),  # a city missing
        ("<trace>0,1,2,9</trace> <trace>3,2,1,0</trace>", (3, 2, 1, 0)),  # the first valid trace
        ("The trace is 1 -> 0 -> 3 -> 2", (1, 0, 3, 2)),  # no tags: the last line with enough numbers
    ],
)
def test_tsp_parse(reply, expected):
    assert TSP(points=[(0, 0), (1, 0), (1, 1), (0, 1)]).parse(reply) == expected


def test_tsp_key_identifies_rotations_and_reversals():
    p = TSP(5, seed=0)
    base = (0, 1, 2, 3, 4)
    same = {p.key(t) for t in [(2, 3, 4, 0, 1), (4, 3, 2, 1, 0), (0, 4, 3, 2, 1)]}
    assert same == {p.key(base)}
    assert p.key((0, 2, 1, 3, 4)) != p.key(base)


def test_tsp_is_not_solved_exactly_past_max_exact():
    assert TSP(6, max_exact=5).optimum() is None
    with pytest.raises(ValueError, match="at least 3"):
        TSP(2)


# ----------------------------------------------------------------------------------------- the loop


async def test_linreg_loop_shows_pairs_worst_first_and_dedups():
    log: list = []
    proposals = iter(["[15, 14]", "w=15, b=14", "[12, 12]", "nothing"] + ["[15, 14]"] * 100)
    lm = scripted(lambda req: next(proposals), log)
    problem = LinearRegression(15, 14)
    run = await run_numeric(problem, lm, steps=2, candidates_per_step=4, seed=0)
    assert run.counts == {"proposed": 8, "new": 2, "duplicates": 5, "unparsed": 1, "failed": 0}
    assert run.evaluations == 5 + 2
    prompt = log[4].messages[0][1]  # the second step's meta-prompt
    values = [int(v) for v in re.findall(r"value:\n(\d+)", prompt)]
    assert values == sorted(values, reverse=True) and len(values) == 7  # listed worst first, best last
    assert "listed in descending order of value, and lower values are better" in prompt
    assert "w=15, b=14\nvalue:" in prompt.rsplit("input:", 1)[1]  # the best pair comes last
    assert run.best_solution == (15.0, 14.0) and run.best_value == pytest.approx(problem.evaluate((15, 14)))
    assert run.best_per_step[0] >= run.best_per_step[1] >= run.best_per_step[2]
    assert {r.temperature for r in log} == {1.0} and sorted(r.sample_index for r in log) == list(range(8))
    s = run.summary()
    assert s["gap_to_optimum"] == pytest.approx(run.best_value - problem.optimum()[1])
    assert s["gap_to_optimum"] >= 0
    assert "random search (7 evaluations" in s["baseline"]["name"]


async def test_tsp_loop_stops_at_the_exact_optimum():
    problem = TSP(6, seed=1)
    opt_tour, opt_len = problem.optimum()
    replies = ["<trace>" + ",".join(map(str, opt_tour)) + "</trace>", "<trace>0,1,2,3,4,5</trace>"]
    log: list = []
    lm = scripted(lambda req: replies[req.sample_index % 2], log)
    run = await run_numeric(problem, lm, steps=10, candidates_per_step=2, seed=0)
    assert run.stopped_by == "optimum" and run.steps_run == 1 and len(log) == 2
    assert run.best_value == pytest.approx(opt_len) and run.summary()["gap_to_optimum"] == pytest.approx(0.0)
    assert "(0): (" in log[0].messages[0][1] and "from 0 to 5 exactly once" in log[0].messages[0][1]
    lengths = [int(v) for v in re.findall(r"length:\n(\d+)", log[0].messages[0][1])]
    assert lengths == sorted(lengths, reverse=True)


async def test_numeric_history_keeps_the_best_twenty():
    log: list = []
    lm = scripted(lambda req: f"[{10 + req.sample_index * 0.1:.1f}, 14]", log)
    await run_numeric(LinearRegression(15, 14), lm, steps=4, candidates_per_step=8, max_history=20)
    last = log[-1].messages[0][1]
    assert len(re.findall(r"value:\n", last)) == 20


def test_plot_is_a_png(tmp_path):
    import asyncio

    problem = TSP(5, seed=0)
    run = asyncio.run(run_numeric(problem, scripted(lambda req: "<trace>0,1,2,3,4</trace>"), steps=2))
    path = plot_run(run, tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_runs_tsp_and_linreg_and_writes_plot_and_summary(tmp_path, monkeypatch):
    from prompthone.cli import opro_cmd

    options: list[dict] = []

    def fake_lm(model, **kw):
        options.append(kw)

        def respond(req):
            if "(w, b)" in req.messages[0][1]:
                return "[15, 14]"
            return "<trace>" + ",".join(map(str, itertools.islice(itertools.count(), 6))) + "</trace>"

        return LM(ScriptedBackend(respond, name=model), cache=False)

    monkeypatch.setattr(opro_cmd, "LM", fake_lm)
    app = typer.Typer()
    opro_cmd.register(app)
    runner = CliRunner()
    tsp = ["opro-numeric", "tsp", "--n", "6", "--steps", "2", "--threads", "1", "--out", str(tmp_path)]
    res = runner.invoke(app, [*tsp, "--model", "local/qwen2.5-coder-0.5b"])
    assert res.exit_code == 0, res.output
    assert options[-1] == {"n_threads": 1}  # one llama.cpp thread, as asked
    assert "gap to optimum" in res.output and "nearest neighbour" in res.output
    res = runner.invoke(app, ["opro-numeric", "linreg", "--steps", "2", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert options[-1] == {}  # no --threads: the backend's default
    assert "random search" in res.output and "gap to optimum" in res.output
    pngs = sorted(tmp_path.glob("*/best_per_step.png"))
    assert len(pngs) == 2
    summary = json.loads(next(tmp_path.glob("opro-linreg-*/summary.json")).read_text())
    assert summary["best_solution"] == [15.0, 14.0] and summary["gap_to_optimum"] >= 0
    bad = runner.invoke(app, ["opro-numeric", "linreg", "--box", "5", "1", "--out", str(tmp_path)])
    assert bad.exit_code == 1 and "LOW < HIGH" in bad.output
