"""The HTML report: opened in headless Chromium, its charts must be drawn and its numbers must be the store's.

The run is real (runner, store, evaluator, LM client, fake OpenAI server). Chromium is Debian's `chromium`
package; without it these tests fail, telling how to install it, because a report nobody rendered is a
report nobody checked.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from prompthone.cli.report_cmd import register
from prompthone.program import PromptParams
from prompthone.report import RunDataError, charts, load_run, render_report, resolve_run, write_report
from prompthone.report.diff import diff_html, diff_pieces
from prompthone.store import RunStore
from prompthone.testing.fake_openai_server import FakeOpenAIServer
from test_report_runlib import INJECTION, graded_responder, make_run

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL = "apt-get update && apt-get install -y chromium"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROMPTHONE_CACHE_DIR", str(tmp / "cache"))
        mp.setenv("PROMPTHONE_RESPONSE_CACHE", str(tmp / "cache" / "responses.sqlite"))
        with FakeOpenAIServer(latency_ms=2, responder=graded_responder) as url:
            outcome = make_run(url, tmp, prices={"openai/fake": (150.0, 600.0)})
    assert INJECTION in outcome.result.best["solve"].instruction, "the run must choose the injected instruction"
    assert outcome.result.best["solve"].demos, "the run must end with demos, so the report shows some"
    return outcome.run_dir


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail(f"chromium is not installed; the report tests render the page in it. Install it with: {INSTALL}")
    return exe


def run_chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        proc = subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"
    return proc


def screenshot(html: Path, png: Path) -> Image.Image:
    run_chromium(f"--screenshot={png}", "--window-size=1200,2000", html.as_uri())
    assert png.is_file(), "chromium wrote no screenshot"
    return Image.open(png).convert("RGB")


def pixels_near(img: Image.Image, colour: str, tol: int = 24) -> list[tuple[int, int]]:
    """(x, y) of pixels within `tol` of `colour` on every channel (antialiasing blends a line's edges)."""
    target = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
    near = (np.abs(np.asarray(img, dtype=np.int16) - target) <= tol).all(axis=2)
    ys, xs = np.nonzero(near)
    return list(zip(xs.tolist(), ys.tolist(), strict=True))


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class DomReader(HTMLParser):
    """From a DOM dump: every start tag and attribute, the text of each element with an id, the text of
    each instruction block, the document's title, and how many points the score chart has."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.by_id: dict[str, str] = {}
        self.instruction_texts: list[str] = []
        self.title = ""
        self.score_chart_circles = 0
        self._stack: list[tuple[str, str | None, list[str]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)
        a = dict(attrs)
        if tag == "circle" and (a.get("class") or "").startswith("trial-"):
            self.score_chart_circles += 1
        if tag in VOID:
            return
        classes = (a.get("class") or "").split()
        self._stack.append((tag, a.get("id"), classes))
        if a.get("id"):
            self.by_id.setdefault(a["id"], "")
        if "instruction" in classes:
            self.instruction_texts.append("")

    def handle_endtag(self, tag):
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                del self._stack[i:]
                break

    def handle_data(self, data):
        for _, id_, _ in self._stack:
            if id_:
                self.by_id[id_] += data
        if any("instruction" in classes for _, _, classes in self._stack):
            self.instruction_texts[-1] += data
        if [t for t, _, _ in self._stack] == ["html", "head", "title"]:
            self.title += data


def read_store(run_dir: Path) -> dict:
    """The numbers the report must show, read with sqlite3 alone (not through the report's own code)."""
    import json

    con = sqlite3.connect(run_dir / "run.sqlite")
    result = json.loads(con.execute("SELECT result FROM ph_run").fetchone()[0])
    return {
        "final": result["final_test"]["score"],
        "start": result["start_test"]["score"],
        "final_ci": result["final_test"]["ci95"],
        "trials": con.execute("SELECT count(*) FROM ph_trials").fetchone()[0],
        "best": con.execute("SELECT max(score) FROM ph_trials WHERE full = 1").fetchone()[0],
        "best_result": result["best_val"],
        "paid": con.execute("SELECT count(*) FROM ph_lm_calls WHERE cached = 0").fetchone()[0],
        "cost": con.execute("SELECT sum(cost_usd) FROM ph_lm_calls").fetchone()[0],
    }


def test_screenshot_shows_the_charts_drawn(run_dir, tmp_path):
    report = write_report(run_dir)
    assert report == run_dir / "report.html"
    img = screenshot(report, tmp_path / "report.png")
    assert img.size == (1200, 2000)
    best_line = pixels_near(img, charts.BEST_LINE)
    assert len(best_line) > 400, f"the best-so-far line is not drawn ({len(best_line)} pixels of its colour)"
    xs = [x for x, _ in best_line]
    assert max(xs) - min(xs) > 600, "the best-so-far line should run across the whole score chart"
    assert len(pixels_near(img, charts.FULL_POINT)) > 50, "no full-validation points drawn"
    assert len(pixels_near(img, charts.MINIBATCH_POINT)) > 50, "no minibatch points drawn"
    assert len(pixels_near(img, charts.role_colour("task"))) > 100, "no cost-over-time line for the task role"

    # the same page without its score chart has none of those pixels: the check above sees the chart
    html = report.read_text()
    stripped, n = re.subn(r'<svg class="chart" id="score-chart".*?</svg>', "", html, flags=re.S)
    assert n == 1
    bare = tmp_path / "bare.html"
    bare.write_text(stripped)
    img2 = screenshot(bare, tmp_path / "bare.png")
    assert len(pixels_near(img2, charts.BEST_LINE)) < 20
    assert len(pixels_near(img2, charts.MINIBATCH_POINT)) < 20


def test_dom_numbers_match_the_store_and_injected_script_is_text(run_dir):
    report = write_report(run_dir)
    dom = run_chromium("--dump-dom", report.as_uri()).stdout
    assert "</html>" in dom
    page = DomReader()
    page.feed(dom)
    want = read_store(run_dir)
    assert want["best"] == want["best_result"]
    assert page.by_id["final-test-score"].strip() == f"{want['final']:.3f}"
    assert page.by_id["start-test-score"].strip() == f"{want['start']:.3f}"
    assert page.by_id["n-trials"].strip() == str(want["trials"])
    assert page.by_id["best-val"].strip() == f"{want['best']:.3f}"
    assert page.by_id["paid-calls"].strip() == f"{want['paid']:,}"
    lo, hi = want["final_ci"]
    assert f"{lo:.3f}–{hi:.3f}" in dom
    # every trial is one point of the score chart
    assert page.score_chart_circles == want["trials"]
    for chart_id in ("score-chart", "test-chart", "tokens-chart", "calls-chart", "cost-chart"):
        assert chart_id in page.by_id, f"chart {chart_id} missing from the DOM"
    assert want["cost"] > 0 and page.by_id["total-cost"].strip() == f"${want['cost']:.4f}"

    # the injected element is text, never an element; it did not run
    assert "script" not in page.tags
    assert INJECTION in page.instruction_texts[0]
    assert "&lt;script&gt;" in dom
    assert "pwned" not in page.title and page.title.startswith("prompthone")
    # nothing on the page reaches the network or runs code
    assert not {"link", "img", "iframe", "object", "embed"} & set(page.tags)
    assert not [k for k, _ in page.attrs if k.startswith("on")]
    assert not [v for k, v in page.attrs if k in ("src", "href") and v]


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(k for k, _ in attrs)


def test_everything_from_users_models_and_data_is_escaped(run_dir):
    data = load_run(run_dir)
    evil = '<img src=x onerror="alert(1)"><svg onload=alert(2)></svg></textarea><marquee>'
    data.config["model"] = evil
    data.config["settings"] = {"note": evil}
    data.manifest["models"] = {"task": evil}
    data.usage[0]["model"] = evil
    data.usage[0]["role"] = evil
    data.events.append({"ts": data.created_at, "kind": evil, "data": {"x": evil}})
    data.result["error"] = evil
    name = next(iter(data.best))
    p = data.best[name]
    data.best = data.best.with_module(
        name, PromptParams(evil + p.instruction, (*p.demos, {"question": evil, "answer": evil}))
    )
    data.best_records = [dict(r, raw=evil, feedback=evil) for r in data.best_records]
    html = render_report(data)
    page = TagCollector()
    page.feed(html)
    assert not {"img", "script", "marquee", "textarea"} & set(page.tags)
    assert not [a for a in page.attrs if a.startswith("on")]
    assert page.tags.count("svg") == 5  # the report's own charts (score, test, tokens, calls, cost), no injected one
    assert html.count("&lt;img src=x onerror=") >= 6


def test_diff_marks_insertions_and_deletions_and_escapes_them():
    assert diff_pieces("Solve the math word problem.", "Solve it carefully.") == [
        ("same", "Solve "),
        ("del", "the math word problem"),
        ("ins", "it carefully"),
        ("same", "."),
    ]
    html = str(diff_html("Say <b>hi</b>", "Say <i>hi</i> & go"))
    assert html == "Say &lt;<del>b</del><ins>i</ins>&gt;hi&lt;/<del>b</del><ins>i</ins>&gt;<ins> &amp; go</ins>"
    assert diff_pieces("same", "same") == [("same", "same")]


def test_an_interrupted_run_still_reports_its_best_so_far(run_dir, tmp_path):
    copy = tmp_path / "runs" / "killed-run"
    copy.mkdir(parents=True)
    src = sqlite3.connect(run_dir / "run.sqlite")
    dst = sqlite3.connect(copy / "run.sqlite")
    src.backup(dst)
    src.close()
    # as SIGKILL leaves it: status running, no result, the last (demo) trial never happened
    dst.execute("UPDATE ph_run SET status = 'running', result = NULL")
    dst.execute("DELETE FROM ph_trials WHERE idx = (SELECT max(idx) FROM ph_trials)")
    dst.commit()
    best = dst.execute("SELECT max(score) FROM ph_trials WHERE full = 1").fetchone()[0]
    dst.close()
    data = load_run(copy)
    assert data.status == "running" and data.final_test is None
    assert data.best_val == best and "no result yet" in (data.best_note or "")
    html = write_report(copy).read_text()
    assert "not scored (run unfinished)" in html
    assert f'id="best-val">{best:.3f}<' in html


def test_a_run_that_scored_nothing_reports_without_charts(tmp_path):
    folder = tmp_path / "empty-run"
    store = RunStore(folder)
    store.create_run("empty-run", {"task": "gsm8k", "optimizer": "x", "data_root": str(tmp_path)}, {"seed": 0})
    store.close()
    html = write_report(folder).read_text()
    assert "No trial was recorded" in html and 'id="n-trials">0<' in html


def test_resolve_run_by_folder_name_prefix_and_errors(run_dir, tmp_path):
    runs = run_dir.parent
    assert resolve_run(run_dir)[1] == run_dir
    assert resolve_run(run_dir.name, runs)[1] == run_dir
    assert resolve_run(run_dir.name[:20], runs)[1] == run_dir  # a unique prefix
    assert resolve_run(run_dir / "run.sqlite")[1] == run_dir
    with pytest.raises(RunDataError, match="prompthone runs"):
        resolve_run("no-such-run", runs)
    assert not (runs / "no-such-run").exists()  # looking did not create a store
    other = runs / f"{run_dir.name[:10]}-other"
    other.mkdir()
    try:
        (other / "run.sqlite").write_bytes(b"")
        with pytest.raises(RunDataError, match="matches 2 runs"):
            resolve_run(run_dir.name[:10], runs)
    finally:
        shutil.rmtree(other)


def test_cli_report_writes_the_page_and_names_missing_runs(run_dir, tmp_path):
    app = typer.Typer()
    register(app)
    out = tmp_path / "r.html"
    res = CliRunner().invoke(app, ["report", run_dir.name, "--runs-dir", str(run_dir.parent), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert str(out) in res.output.replace("\n", "")
    assert out.read_text().startswith("<!DOCTYPE html>")
    res = CliRunner().invoke(app, ["report", "missing-run", "--runs-dir", str(tmp_path)])
    assert res.exit_code == 1
    assert "no run 'missing-run'" in res.output
    # An absolute path that is no run folder (a typo, or the folder above the runs) is named, not a
    # traceback from matching it as a name prefix under --runs-dir.
    for command in ("report", "show"):
        res = CliRunner().invoke(app, [command, str(tmp_path / "nowhere"), "--runs-dir", str(tmp_path)])
        assert res.exit_code == 1, res.output
        assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
        expected = f"no run '{tmp_path / 'nowhere'}': {tmp_path / 'nowhere'} is not a run folder"
        assert "".join(expected.split()) in "".join(res.output.split())  # the console wraps long lines
