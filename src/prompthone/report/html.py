"""`prompthone report RUN`: one self-contained HTML page about a run.

The page works offline and from a mail attachment: CSS is inline, charts are SVG drawn by
`prompthone.report.charts`, and there is no JavaScript at all. Prompts, demos, model outputs and config
values come from models, datasets and users, so the template autoescapes everything; the only markup
that bypasses it is what `charts` and `diff` build, and they escape every piece of text they embed.
Numbers a test compares against the store carry stable element ids (`final-test-score`, `n-trials`, ...).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from prompthone.program import Demo, render_prompts
from prompthone.report import charts
from prompthone.report.diff import diff_html
from prompthone.report.run_data import RUNS_DIR, RunData, RunDataError, load_run

REPORT_NAME = "report.html"

_env = Environment(
    loader=PackageLoader("prompthone.report", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def fmt_score(v: float | None) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def fmt_int(v: float | None) -> str:
    return "–" if v is None else f"{int(v):,}"


def fmt_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def fmt_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def write_report(
    run: str | Path, *, out: Path | None = None, runs_dir: Path = RUNS_DIR, data_root: str | None = None
) -> Path:
    """Write the report of `run` to `out` (default: `report.html` in the run folder) and return its path."""
    data = load_run(run, runs_dir=runs_dir, data_root=data_root)
    if out is None:
        if data.folder is None:
            raise RunDataError(f"the run at {data.url} has no folder to write {REPORT_NAME} into; give --out PATH")
        out = data.folder / REPORT_NAME
    page = render_report(data)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise RunDataError(
            f"cannot write the report to {out}: {exc.strerror or exc}; give --out FILE in a folder you can write to"
        ) from None
    return out


def render_report(data: RunData) -> str:
    """The report page of a loaded run, as HTML text."""
    return _env.get_template("report.html").render(**report_context(data))


def report_context(data: RunData) -> dict[str, Any]:
    """Everything the template shows, computed here so that the template holds no logic worth testing."""
    totals = data.totals()
    start_test, final_test = data.start_test, data.final_test
    n_full = len(data.full_trials)
    cards = [
        _card("Final test score", final_test.mean if final_test else None, "final-test-score", final_test),
        _card("Start test score", start_test.mean if start_test else None, "start-test-score", start_test),
        {
            "label": "Best validation",
            "value": fmt_score(data.best_val),
            "id": "best-val",
            "sub": f"start {fmt_score(data.start_val)}",
        },
        {
            "label": "Trials",
            "value": str(len(data.trials)),
            "id": "n-trials",
            "sub": f"{n_full} full validation, {len(data.trials) - n_full} minibatch",
        },
        {
            "label": "Paid LM calls",
            "value": fmt_int(totals["paid_calls"]),
            "id": "paid-calls",
            "sub": f"{fmt_int(totals['calls'] - totals['paid_calls'])} served from cache",
        },
        {
            "label": "Paid tokens",
            "value": fmt_int(totals["prompt_tokens"] + totals["completion_tokens"]),
            "id": "paid-tokens",
            "sub": Markup('<span id="total-cost">${:.4f}</span> · wall {}').format(
                totals["cost_usd"], fmt_duration(data.wall_s)
            ),
        },
    ]
    return {
        "data": data,
        "title": f"{data.optimizer} on {data.task}",
        "created": fmt_time(data.created_at),
        "wall": fmt_duration(data.wall_s),
        "cards": cards,
        "notes": [n for n in (data.program_note, data.start_note, data.best_note) if n]
        + [str(e["data"]["message"]).rstrip(".") for e in data.events if e.get("kind") == "warning"],
        "score_chart": score_chart(data),
        "test_chart": test_chart(data),
        "workers_chart": workers_chart(data),
        "test_rows": [
            {
                "label": label,
                "test": fmt_score(score.mean) if score else "–",
                "ci": f"{score.lo:.3f}–{score.hi:.3f}" if score else "–",
                "val": fmt_score(val),
            }
            for label, score, val in (
                ("start", start_test, data.start_val),
                ("final", final_test, data.best_val),
            )
        ]
        + (
            [{"label": "change", "test": f"{final_test.mean - start_test.mean:+.3f}", "ci": "", "val": _delta(data)}]
            if start_test and final_test
            else []
        ),
        "settings": ", ".join(f"{k}={v}" for k, v in (data.config.get("settings") or {}).items()),
        "cost_charts": cost_charts(data),
        "usage": usage_rows(data),
        "usage_totals": {
            "calls": fmt_int(totals["calls"]),
            "paid_calls": fmt_int(totals["paid_calls"]),
            "prompt_tokens": fmt_int(totals["prompt_tokens"]),
            "completion_tokens": fmt_int(totals["completion_tokens"]),
            "cached_tokens": fmt_int(totals["cached_tokens"]),
            "cost": f"${totals['cost_usd']:.4f}",
        },
        "modules": module_views(data),
        "examples": example_view(data),
        "trials": trial_rows(data),
        "events": [
            {"time": fmt_time(e["ts"]), "kind": e["kind"], "data": json.dumps(e["data"], ensure_ascii=False)}
            for e in data.events
        ],
        "manifest_facts": manifest_facts(data.manifest),
        "config_json": json.dumps(data.config, indent=2, ensure_ascii=False, default=str),
        "manifest_json": json.dumps(data.manifest, indent=2, ensure_ascii=False, default=str),
        "generated": fmt_time(datetime.now(UTC).timestamp()),
    }


def _delta(data: RunData) -> str:
    a, b = data.start_val, data.best_val
    return f"{b - a:+.3f}" if a is not None and b is not None else ""


def _card(label: str, value: float | None, id_: str, score: Any) -> dict[str, str]:
    sub = f"95% CI {score.lo:.3f}–{score.hi:.3f}" if score is not None else "not scored (run unfinished)"
    return {"label": label, "value": fmt_score(value), "id": id_, "sub": sub}


def score_chart(data: RunData) -> Markup | None:
    """Every trial's score (minibatch and full validation marked apart) and the best full score so far."""
    if not data.trials:
        return None
    idx = [t["idx"] for t in data.trials]
    scores = [t["score"] for t in data.trials]
    tips = [
        f"trial {t['idx']}: {fmt_score(t['score'])} on {'the validation set' if t['full'] else 'a minibatch'}"
        f" of {t['n']} · candidate {t['candidate'][:10]}"
        + (f" · {', '.join(f'{k}={v}' for k, v in t['info'].items())}" if t["info"] else "")
        for t in data.trials
    ]
    full = [s if t["full"] else None for s, t in zip(scores, data.trials, strict=True)]
    mini = [None if t["full"] else s for s, t in zip(scores, data.trials, strict=True)]
    known = [s for s in scores if s is not None]
    unit = all(0.0 <= s <= 1.0 for s in known)
    return charts.xy_chart(
        [
            charts.Series("best so far", idx, data.best_so_far(), charts.BEST_LINE, kind="step", css_class="best-line"),
            charts.Series(
                "minibatch", idx, mini, charts.MINIBATCH_POINT, marker="ring", tips=tips, css_class="trial-minibatch"
            ),
            charts.Series("full validation", idx, full, charts.FULL_POINT, tips=tips, css_class="trial-full"),
        ],
        title="Validation score per trial",
        x_label="trial",
        y_label="score",
        y_range=(0.0, 1.0) if unit else None,
        x_min=0,
        width=1040,
        height=330,
        chart_id="score-chart",
    )


def workers_chart(data: RunData) -> Markup | None:
    """Trials per process over time, for a run that workers shared (None for a run one process did: one lane
    says nothing the score chart does not)."""
    done = [t for t in data.trials if t.get("worker")]
    workers = list(dict.fromkeys(t["worker"] for t in done))
    if len(workers) < 2:
        return None
    t0 = min(t["ts"] for t in done)
    lanes = []
    for w in workers:
        mine = [t for t in done if t["worker"] == w]
        tips = [
            f"trial {t['idx']}: {fmt_score(t['score'])} on {'the validation set' if t['full'] else 'a minibatch'}"
            f" of {t['n']} · candidate {t['candidate'][:10]} · {w}"
            for t in mine
        ]
        lanes.append(charts.Lane(w, [t["ts"] - t0 for t in mine], [bool(t["full"]) for t in mine], tips))
    return charts.lane_chart(
        lanes, title="Trials per worker over time", x_label="seconds since the first trial", chart_id="workers-chart"
    )


def test_chart(data: RunData) -> Markup | None:
    rows = []
    for label, s, colour in (
        ("start", data.start_test, charts.START_COLOUR),
        ("final", data.final_test, charts.FINAL_COLOUR),
    ):
        if s is not None:
            rows.append(charts.Interval(label, s.mean, s.lo, s.hi, colour))
    if not rows:
        return None
    n = data.config.get("n_test")
    return charts.interval_chart(
        rows, title=f"Test score with 95% CI ({n} held-out examples)", width=500, chart_id="test-chart"
    )


def cost_charts(data: RunData) -> list[Markup]:
    """Cumulative paid tokens and paid calls over the run's time, one line per role; and the cost in USD
    when the run's price table priced any of its models (local models are free, so no chart for them)."""
    paid = [c for c in data.lm_calls if not c["cached"]]
    if not paid:
        return []
    roles = list(dict.fromkeys(c["role"] for c in paid))
    t0 = data.created_at
    token_series, call_series, cost_series = [], [], []
    for i, role in enumerate(roles):
        mine = [c for c in paid if c["role"] == role]
        xs = [0.0] + [max(0.0, c["ts"] - t0) for c in mine]
        tokens, calls, costs, tok, usd = [0.0], [0.0], [0.0], 0, 0.0
        for n, c in enumerate(mine, 1):
            tok += c["prompt_tokens"] + c["completion_tokens"]
            usd += c["cost_usd"]
            tokens.append(tok)
            calls.append(n)
            costs.append(usd)
        colour = charts.role_colour(role, i)
        token_series.append(charts.Series(role, xs, tokens, colour, kind="line"))
        call_series.append(charts.Series(role, xs, calls, colour, kind="line"))
        cost_series.append(charts.Series(role, xs, costs, colour, kind="line"))
    common = {"x_label": "seconds since the run started", "x_min": 0.0, "width": 515, "height": 280}
    out = [
        charts.xy_chart(
            token_series, title="Paid tokens (cumulative)", y_label="tokens", chart_id="tokens-chart", **common
        ),
        charts.xy_chart(
            call_series, title="Paid LM calls (cumulative)", y_label="calls", chart_id="calls-chart", **common
        ),
    ]
    if any(c["cost_usd"] > 0 for c in paid):
        out.append(
            charts.xy_chart(
                cost_series, title="Cost in USD (cumulative)", y_label="USD", chart_id="cost-chart", **common
            )
        )
    return out


def usage_rows(data: RunData) -> list[dict[str, str]]:
    latency = data.latency_by()
    rows = []
    for u in sorted(data.usage, key=lambda u: (u["role"], u["model"])):
        lat = latency.get((u["role"], u["model"]))
        rows.append(
            {
                "role": u["role"],
                "model": u["model"],
                "calls": fmt_int(u["calls"]),
                "paid_calls": fmt_int(u["paid_calls"]),
                "prompt_tokens": fmt_int(u["prompt_tokens"]),
                "completion_tokens": fmt_int(u["completion_tokens"]),
                "cached_tokens": fmt_int(u["cached_tokens"]),
                "cost": f"${u['cost_usd']:.4f}",
                "latency": "–" if lat is None else f"{lat * 1000:.0f} ms",
            }
        )
    return rows


def _demo_fields(demo: Demo, order: Sequence[str] = ()) -> list[tuple[str, str]]:
    """A demo's fields in the signature's order (inputs, then outputs), any others after them."""
    keys = [k for k in order if k in demo] + [k for k in demo if k not in order]
    return [(k.replace("_", " "), demo[k]) for k in keys]


def module_views(data: RunData) -> list[dict[str, Any]]:
    """Per module: final instruction, its diff against the start, demos (new or kept), messages sent."""
    best, start = data.best, data.start
    if best is None:
        return []
    modules = data.program.named_modules() if data.program is not None else {}
    try:
        rendered = render_prompts(data.program, best) if data.program is not None else {}
    except Exception:  # a stored candidate that no longer renders still shows its raw instruction
        rendered = {}
    views = []
    for name, params in best.items():
        before = start[name] if start is not None and name in start else None
        old_demos = set(before.demos) if before is not None else set()
        new_demos = set(params.demos)
        module = modules.get(name)
        order = (*module.signature.input_names, *module.signature.output_names) if module is not None else ()
        views.append(
            {
                "name": name,
                "kind": type(module).__name__ if module is not None else "",
                "signature": module.signature.shorthand() if module is not None else "",
                "instruction": params.instruction,
                "start_instruction": before.instruction if before is not None else None,
                "changed": before is None or before.instruction != params.instruction,
                "diff": diff_html(before.instruction, params.instruction) if before is not None else None,
                "position": params.position,
                "start_position": before.position if before is not None else None,
                "format": params.format,
                "start_format": before.format if before is not None else None,
                "demos": [{"fields": _demo_fields(d, order), "new": d not in old_demos} for d in params.demos],
                "removed_demos": [
                    {"fields": _demo_fields(d, order)}
                    for d in (before.demos if before is not None else ())
                    if d not in new_demos
                ],
                "messages": rendered.get(name, []),
            }
        )
    return views


def _natural(text: str) -> list:
    """Sort key that puts `test:2` before `test:10`."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text)]


def _outcome(record: dict[str, Any]) -> float | None:
    if record["status"] == "error":
        return None
    return 0.0 if record["status"] == "parse_failure" else record["score"]


def example_view(data: RunData, limit: int = 12) -> dict[str, Any] | None:
    """Examples both the start and the best candidate were scored on: which the optimization fixed or broke."""
    if data.best is None or data.start is None or data.best == data.start:
        return None
    start = {r["example_id"]: r for r in data.start_records}
    best = {r["example_id"]: r for r in data.best_records}
    shared = sorted((i for i in best if i in start), key=_natural)
    if not shared:
        return None
    counts = {"fixed": 0, "broken": 0, "same": 0}
    rows: dict[str, list[dict[str, Any]]] = {"fixed": [], "broken": []}
    for i in shared:
        a, b = _outcome(start[i]), _outcome(best[i])
        if a is None or b is None or a == b:
            counts["same"] += 1
            continue
        kind = "fixed" if b > a else "broken"
        counts[kind] += 1
        if len(rows[kind]) < limit:
            rows[kind].append(
                {
                    "id": i,
                    "start": fmt_score(a),
                    "best": fmt_score(b),
                    "start_raw": start[i].get("raw", ""),
                    "best_raw": best[i].get("raw", ""),
                    "feedback": best[i].get("feedback") or "",
                }
            )
    return {"n": len(shared), "counts": counts, "rows": rows, "limit": limit}


def trial_rows(data: RunData) -> list[dict[str, Any]]:
    best_so_far = data.best_so_far()
    chosen = data.best.hash if data.best is not None else None
    return [
        {
            "idx": t["idx"],
            "candidate": t["candidate"][:12],
            "chosen": t["candidate"] == chosen,
            "score": fmt_score(t["score"]),
            "n": t["n"],
            "full": t["full"],
            "best": fmt_score(b),
            "info": ", ".join(f"{k}={v}" for k, v in t["info"].items()),
            "time": f"{max(0.0, t['ts'] - data.created_at):.1f} s",
        }
        for t, b in zip(data.trials, best_so_far, strict=True)
    ]


def manifest_facts(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """The manifest's key facts as label/value pairs (the full JSON is shown below them)."""
    facts: list[tuple[str, str]] = []
    for role, ident in (manifest.get("models") or {}).items():
        facts.append((f"{role} model", str(ident)))
    for split, d in (manifest.get("data") or {}).items():
        if isinstance(d, dict):
            facts.append((f"{split} data", f"{d.get('n')} examples · sha256 {str(d.get('sha256', ''))[:16]}…"))
    for key in ("seed", "metric", "program", "python", "platform"):
        if key in manifest:
            facts.append((key, str(manifest[key])))
    pkgs = manifest.get("packages") or {}
    if pkgs:
        facts.append(("packages", ", ".join(f"{k} {v}" for k, v in pkgs.items() if v)))
    return facts
