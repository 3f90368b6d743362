"""Benchmark reports that spend nothing: proposal contract shares (proposal_contracts.py) and the two-stage
HotPotQA retrieval analysis (hotpot_retrieval.py) read what runs stored."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import proposal_contracts as pc


def _row(method: str, key: str, report: dict | None, **extra) -> dict:
    return {"side": "prompthone", "method": method, "task": "t", "splits": {"seed": 0}, "row_key": key,
            "model": "openai/small@http://x", "proposals": report, **extra}  # fmt: skip


def test_latest_row_per_key_counts_and_a_run_folder_stands_in_for_an_old_row(tmp_path: Path) -> None:
    rep = {"checked": 4, "kept": 2, "repaired": 1, "rejected": 1, "chosen": {"m": "kept"}}
    old_dir = tmp_path / "runs" / "old"
    old_dir.mkdir(parents=True)
    (old_dir / "summary.json").write_text(json.dumps({"proposals": {**rep, "chosen": {"m": "start"}}}))
    rows = [
        _row("mipro", "a", {**rep, "checked": 99}),  # run again under the same key: the later row counts
        _row("mipro", "a", rep),
        _row("mipro", "b", None, run_dir=str(old_dir)),  # no report of its own: its summary.json
        _row("mipro", "c", None, run_dir=str(tmp_path / "gone")),  # neither: counted as missing
        _row("mipro-proposer", "d", rep, proposer_model="local/big"),
        {"side": "dspy", "method": "dspy-miprov2", "task": "t", "row_key": "e"},
        _row("zero-shot", "f", None),
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    tallies, missing = pc.tally([path], root=tmp_path)
    assert missing == 1
    small, big = tallies[("t", "openai/small")], tallies[("t", "local/big")]
    assert (small.runs, small.checked, small.kept, small.repaired, small.rejected) == (2, 8, 4, 2, 2)
    assert dict(small.chosen) == {"kept": 1, "start": 1}
    assert (big.runs, big.checked) == (1, 4)
    text = pc.markdown(tallies, missing)
    assert "| t | openai/small | 2 | 8 | 4 (50%) | 2 (25%) | 2 (25%) | kept 1, start 1 |" in text
    assert "| **all tasks** | local/big | 1 | 4 | 2 (50%) |" in text


def test_hotpot_retrieval_reads_stored_queries_and_checks_the_supporting_titles(tmp_path: Path) -> None:
    """A run folder of the real hotpotqa-500 task with stored records: the start asked the question as
    written, the chosen program asked for the first supporting title; the numbers follow from BM25."""
    import sqlite3

    import hotpot_retrieval as hr
    from prompthone.tasks import get_task
    from prompthone.tasks.splits import task_splits

    task = get_task("hotpotqa-500")
    test = task_splits(task, n_train=5, n_val=5, n_test=6, seed=0).test
    program = task.make_program(None)
    run = tmp_path / "run"
    run.mkdir()
    summary = {"task": "hotpotqa-500", "seed": 0, "splits": {"train": 5, "val": 5, "test": 6},
               "start_candidate": "S", "best_candidate": "B"}  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    con = sqlite3.connect(run / "run.sqlite")
    con.execute("CREATE TABLE scores (key TEXT PRIMARY KEY, candidate TEXT, example_id TEXT, metric TEXT, record TEXT)")
    for i, ex in enumerate(test):
        title = ex.labels["supporting_titles"][0]
        for cand, query, score in (("S", ex.inputs["question"], 0.0), ("B", f"{title} {title}", float(i % 2))):
            rec = {"score": score, "outputs": {"answer": "x", "search_query": query}}
            con.execute("INSERT INTO scores VALUES (?, ?, ?, 'em', ?)", (f"{cand}{i}", cand, ex.id, json.dumps(rec)))
    con.commit()
    con.close()

    (start, chosen), changed = hr.analyse(run)
    expect_any = sum(
        bool({hr.title_of(p) for p in program.retrieve(f"{t} {t}")} & {t})
        for t in (ex.labels["supporting_titles"][0] for ex in test)
    )
    assert (start.n, chosen.n) == (6, 6) and start.query_is_question == 1.0 and chosen.query_is_question == 0.0
    assert chosen.answer == 0.5 and start.answer == 0.0
    assert chosen.any_supporting == expect_any / 6 and expect_any >= 4  # a title finds its own passage
    assert len(changed) == 5 and changed[0][0] == test[0].inputs["question"]
    assert "| chosen | 6 | 0.500" in hr.markdown("run", [start, chosen])


def test_formats_with_demos_draws_the_same_label_covering_demos_and_keys_rows_by_their_count(tmp_path: Path) -> None:
    """`formats.py --demos K`: K demos from the training split, distinct labels first, the same on every call
    (both sides and every format get them); the table names such rows apart from the zero-shot ones."""
    import formats

    root = str(tmp_path / "data")
    (tmp_path / "data" / "trec" / "raw").mkdir(parents=True)
    labels = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    lines = [f"{labels[i % 6 if i < 12 else 2]}:x question number {i} ?" for i in range(40)]  # mostly entity
    (tmp_path / "data" / "trec" / "raw" / "TREC.train").write_text("\n".join(lines) + "\n", encoding="latin-1")
    bench = formats.BENCHES["trec-label"]
    four = formats.demos_for(bench, 4, root)
    assert four == formats.demos_for(bench, 4, root) and len(four) == 4
    assert all(set(d) == {"question", "label"} for d in four)
    assert len({d["label"] for d in four}) == 4  # four classes, not four entity questions
    assert formats.demos_for(bench, 0, root) == []
    rows = [{"task": "trec-label", "model": "0.5b", "format": f, "demos": k, "n": 5, "mean": 0.2, "lo": 0.0, "hi": 0.5}
            for f in ("labels", "json") for k in (0, 4)]  # fmt: skip
    table = formats.table(rows)
    assert "| trec-label | 0.5b |" in table and "| trec-label +4 demos | 0.5b |" in table
    assert formats.row_key("trec-label", "0.5b", "json", 4) != formats.row_key("trec-label", "0.5b", "json")
    # a row with demos measured under an older layout of such prompts is not taken as done; DSPy's side is its own
    assert formats.row_key("trec-label", "0.5b", "json", 4) != formats.row_key("trec-label", "0.5b", "json", 4, 1)
    assert formats.row_key("trec-label", "0.5b", "json", 0) == formats.row_key("trec-label", "0.5b", "json", 0, 1)
    assert formats.row_key("trec-label", "0.5b", "dspy", 4) == formats.row_key("trec-label", "0.5b", "dspy", 4, 1)
    # `--follow-up` (modules ask again for a missing output) makes prompthone rows of their own; DSPy's are its own
    plain, dspy = formats.row_key("trec-label", "0.5b", "json"), formats.row_key("trec-label", "0.5b", "dspy")
    assert plain != formats.row_key("trec-label", "0.5b", "json", follow_up=True)
    assert dspy == formats.row_key("trec-label", "0.5b", "dspy", follow_up=True)
    follow = {"task": "gsm8k", "model": "0.5b", "format": "labels", "reasoning": "none", "follow_up": True}
    assert (
        formats.row_task(follow) == "gsm8k [follow-up]" and formats.row_task({**follow, "follow_up": False}) == "gsm8k"
    )


def test_formats_verdict_checks_the_default_start_against_every_format_and_dspy() -> None:
    """`formats.py --report`'s verdict: the default start's mean over the directly answered tasks against each
    format's, and each task (GSM8K under its reasoning start, which follows up) where the start scores below
    DSPy's lower bound; a format missing a task gets no mean, an unfinished one says so. Each model's start is
    its catalog entry's (0.5B `json`, 1.5B `labels`), so over both models the start is a row of its own."""
    import formats

    def row(
        task: str, model: str, fmt: str, mean: float, n: int = 100, right_last: bool = False, **extra: object
    ) -> dict:
        right = [1.0] * round(mean * n)
        wrong = [0.0] * (n - len(right))
        return {"task": task, "model": model, "format": fmt, "n": n, "mean": mean, "lo": mean - 0.1,
                "hi": mean + 0.1, "reasoning": "none", "example_ids": [f"{task}-{i}" for i in range(n)],
                "scores": wrong + right if right_last else right + wrong, **extra}  # fmt: skip

    rows = []
    for task in formats.DIRECT_TASKS:
        rows += [row(task, "0.5b", "json", 0.5), row(task, "0.5b", "labels", 0.4), row(task, "0.5b", "dspy", 0.42)]
        rows += [row(task, "1.5b", "labels", 0.5, right_last=True), row(task, "1.5b", "tags", 0.6, partial=True, n=40)]
    rows += [row("bbh/object_counting", "0.5b", "json", 0.1), row("bbh/object_counting", "0.5b", "json", 0.2, demos=4)]
    rows += [row("gsm8k", "0.5b", "labels", 0.3, follow_up=True), row("gsm8k", "0.5b", "dspy", 0.5)]
    rows += [row("gsm8k", "0.5b", "labels", 0.01)]  # the same start without the follow-up: not the default
    text = formats.verdict(rows)
    lines = {tuple(line.split(" | ")[:2]): line for line in text.splitlines() if line.startswith("| ")}
    json_mean = 100 * (5 * 0.5 + 0.1) / 6  # the later object counting row replaces the earlier one; demos don't count
    assert f"| **{json_mean:.1f}** |" in lines[("| 0.5b", "json (default)")]
    assert "| 40.0 | gsm8k: 30.0 (n=100)" in lines[("| 0.5b", "labels")] and "| 42.0 |" in lines[("| 0.5b", "dspy")]
    starts = "- 0.5b: the default start (`json`, `labels` for GSM8K) is best on the mean; below DSPy's CI on "
    assert starts + "bbh/object_counting: 10.0 (n=100) vs 42.0 (32-52, n=100); gsm8k: 30.0 (n=100) vs 50.0" in text
    assert (
        "| **60.0 (n>=40)** | none |" in lines[("| 1.5b", "tags")]
        and "0 of 6 tasks measured" in lines[("| 1.5b", "dspy")]
    )
    assert (
        # paired on the 40 examples both scored per task: labels had none of them right, tags 24
        "- 1.5b: the default start (`labels`, `labels` for GSM8K) is below `tags` on the mean by 60.0 points "
        "(paired over 240 examples: 95% CI +53.8 to +66.2); below DSPy's CI on no task"
        in text
        and "| 1.5b | labels (default) |" in text
    )
    assert "| 6 of 12 tasks measured |" in lines[("| both", "tags")]  # both models: a mean needs every pair
    assert "| 6 of 12 tasks measured |" in lines[("| both", "json")]  # json is no start on 1.5b, nor a default
    each = lines[("| both", "each model's start")]  # 0.5b in json, 1.5b in labels: 12 rows
    assert f"| {100 * (json_mean / 100 + 0.5) / 2:.1f} |" in each and "0.5b bbh/object_counting: 10.0" in each
    assert "- both: the default start (`json` on 0.5b, `labels` on 1.5b, `labels` for GSM8K) is best" in text
    assert formats.verdict([r for r in rows if r["format"] != "json"]).count("not measured on every task") == 3


def test_formats_paired_gap_compares_the_examples_both_rows_scored() -> None:
    import formats

    a = {"example_ids": ["x", "y", "z"], "scores": [1.0, 1.0, 0.0]}
    b = {"example_ids": ["y", "x"], "scores": [1.0, 0.0]}  # another order, and no "z": it is not paired
    gap, lo, hi, n = formats.paired_gap([a], [b])
    assert (gap, n) == (0.5, 2) and lo == pytest.approx(0.5 - 1.959964 * 0.5) and hi == pytest.approx(0.5 + 0.979982)
    assert math.isnan(formats.paired_gap([a], [{"example_ids": ["q"], "scores": [1.0]}])[0])


def test_formats_rows_of_a_task_whose_output_enumerates_its_values_are_read_again_under_the_label_set_rule() -> None:
    """Rule 8 of the parser changes how replies to trec-label's `label` ("one of: ...") are read, so those rows
    are scored again (their replies replay from the caches); SST-2's answer enumerates nothing, and DSPy's
    side reads its own replies."""
    import formats

    old = {"task": "trec-label", "model": "1.5b", "format": "labels", "demos": 0, "n": 100}
    assert formats.parse_revision("trec-label", "labels") == formats.LABEL_SET_PARSE_REVISION == 2
    assert formats.key_of(old) != formats.row_key("trec-label", "1.5b", "labels")
    assert formats.key_of({**old, "parse_revision": 2}) == formats.row_key("trec-label", "1.5b", "labels")
    assert formats.left_to_score([old], ["labels"], 100, "trec-label", "1.5b", 0, "step", False) == ["labels"]
    for task, fmt in (("sst2", "labels"), ("trec-label", "dspy"), ("hotpotqa", "json")):
        assert formats.parse_revision(task, fmt) == 1
        assert formats.key_of({**old, "task": task, "format": fmt}) == formats.row_key(task, "1.5b", fmt)


def test_chosen_demos_takes_dspy_rows_with_their_demos_and_tables_each_layout(tmp_path: Path) -> None:
    """`chosen_demos.py`: DSPy MIPROv2 rows that recorded their chosen demos (the latest per key) become
    sources; rows with demos in a prompthone layout key on the layout revision; the table shows each layout."""
    import chosen_demos as cd

    program = {"instruction": "Classify.", "demos": 2, "demo_fields": [{"question": "Who?", "label": "human"}] * 2}
    rows = [
        {"method": "dspy-miprov2", "task": "trec-label", "row_key": "k0", "best_program": {"classify": program}},
        {"method": "dspy-miprov2", "task": "trec-label", "row_key": "k1", "best_program": {"classify": {"demos": 4}}},
        {"method": "mipro", "task": "trec-label", "row_key": "k2", "best_program": {"classify": program}},
        {
            "method": "dspy-miprov2",
            "task": "trec-label",
            "row_key": "k0",
            "best_program": {"classify": program},
            "x": 1,
        },
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (source,) = cd.chosen_programs([str(path)])  # no demos recorded, or not DSPy's: left out; the latest k0
    assert source["x"] == 1
    assert cd.row_key(source, "json") == ("k0", "json", cd.formats.DEMO_LAYOUT_REVISION)
    assert cd.row_key(source, "dspy") == ("k0", "dspy", 1)
    scored = [
        {"task": "trec-label", "seed": 1, "source_row_key": "k0", "source_test": 0.665, "demos": 2, "n": 200,
         "format": f, "mean": m, "lo": m - 0.07, "hi": m + 0.07}
        for f, m in (("dspy", 0.665), ("json", 0.545), ("json", 0.62))
    ]  # fmt: skip
    table = cd.table(scored)
    assert "| trec-label, 1 | 2 | 66.5 n=200 | 66.5 (60-74) | 62.0 (55-69) |" in table  # the latest json row


def test_formats_bbh_cot_scores_the_program_compare_dspy_runs() -> None:
    """`bbh-cot/<task>` is there to say which format the BBH side by side should start in, so its
    program must send what the built-in task's program sends, in every format."""
    import formats
    from prompthone.program.render import render_messages
    from prompthone.tasks.lookup import get_task

    ours = formats.BENCHES["bbh-cot/sports_understanding"].program(None).step
    builtin = get_task("bbh/sports_understanding").make_program(None).solve
    question = {"question": 'Is the following sentence plausible? "Mike Trout hit a walkoff homer."'}
    for fmt in ("labels", "tags", "json"):
        sent = [render_messages(m.signature, m.params.with_format(fmt), question) for m in (ours, builtin)]
        assert sent[0] == sent[1] and any("plausible" in m["content"] for m in sent[0])
    assert formats.BENCHES["bbh-cot/sports_understanding"].max_tokens == 256
    # `--reasoning brief`: the reasoning field worded otherwise, a row of its own; DSPy's side is unchanged
    brief = replace(formats.BENCHES["bbh-cot/sports_understanding"], reasoning=formats.REASONING["brief"])
    (reasoning, answer) = brief.program(None).step.signature.outputs
    assert (reasoning.name, reasoning.description) == ("reasoning", formats.REASONING["brief"])
    assert answer.name == "answer" and len(brief.program(None).step.signature.outputs) == 2
    task = "bbh-cot/sports_understanding"
    assert formats.row_key(task, "0.5b", "labels", reasoning="brief") != formats.row_key(task, "0.5b", "labels")
    assert formats.row_key(task, "0.5b", "dspy", reasoning="brief") == formats.row_key(task, "0.5b", "dspy")
    row = {"task": task, "model": "0.5b", "format": "labels", "reasoning": "brief"}
    assert formats.row_task(row) == f"{task} [reasoning: brief]" and formats.row_task({**row, "format": "dspy"}) == task


def test_formats_reasoning_applies_only_to_programs_that_reason() -> None:
    """`--reasoning brief` over several tasks must not give a `Predict` program a reasoning field."""
    import argparse

    import formats

    args = argparse.Namespace(reasoning="brief")
    assert formats.reasoning_of("bbh-cot/sports_understanding", args) == "brief"
    assert formats.reasoning_of("gsm8k", args) == "brief"
    assert formats.reasoning_of("trec-label", args) == "step"
    for task in ("trec-label", "sst2"):
        outputs = formats.bench_for(task, args).program(None).step.signature.output_names
        assert "reasoning" not in outputs
    step = formats.bench_for("gsm8k", argparse.Namespace(reasoning="step")).program(None)
    assert step.step.signature.outputs[0].description == formats.REASONING["step"]


def test_formats_default_reasoning_is_the_modules_own_and_only_other_wordings_are_labelled() -> None:
    """The table marks a chain-of-thought row whose reasoning field is worded otherwise than a
    `ChainOfThought` words it now; rows of programs without a reasoning field carry no mark."""
    import formats
    from prompthone.program import ChainOfThought
    from prompthone.program.module import REASONING_DESCRIPTION

    assert formats.REASONING[formats.DEFAULT_REASONING] == REASONING_DESCRIPTION
    (reasoning, _) = ChainOfThought("question -> answer").signature.outputs
    assert reasoning.description == formats.REASONING[formats.DEFAULT_REASONING]
    assert formats.parse_args([]).reasoning == formats.DEFAULT_REASONING
    cot = {"task": "gsm8k", "model": "0.5b", "format": "labels"}
    assert formats.row_task({**cot, "reasoning": formats.DEFAULT_REASONING}) == "gsm8k"
    assert formats.row_task(cot) == "gsm8k [reasoning: step]"  # a row from before the field: the old wording
    assert (
        formats.row_task({"task": "trec-label", "model": "0.5b", "format": "labels", "reasoning": "step"})
        == "trec-label"
    )


def test_dspy_targets_takes_each_keys_latest_row_and_walls_only_from_rows_paid_in_full(tmp_path: Path) -> None:
    import dspy_targets as dt

    def row(method: str, key: str, score: float, date: str, wall: float = 0.0, at_start: int = 0, paid: int = 1,
            **extra) -> dict:  # fmt: skip
        test = {"score": score, "ci95": [score - 0.05, score + 0.05], "n": 200}
        cost = {"wall_s_optimization": wall, "cache_entries_at_start": at_start, "calls": {"task": paid},
                "loadavg_start": [1.0, 1.0, 1.0], "loadavg_end": [1.2, 1.0, 1.0], "server": {"threads": 1}}  # fmt: skip
        return {"method": method, "row_key": key, "date_utc": date, "git": "abc", "test": test, **cost, **extra}

    main_rows = [
        row("zero-shot", "z", 0.40, "2026-01-01"),
        row("dspy-zero-shot", "dz", 0.45, "2026-01-01"),
        row("mipro", "m", 0.70, "2026-01-02", wall=600),  # paid in full: its wall counts
        row("mipro", "m", 0.60, "2026-01-04", wall=5, at_start=900, paid=0),  # replayed: the score counts, not the wall
        row("mipro", "old-default", 0.99, "2026-01-05", wall=1),  # another key (an earlier default): ignored
        row("dspy-miprov2", "d", 0.64, "2026-01-02", wall=1500),
    ]
    wall_rows = [
        row("dspy-miprov2", "d", 0.64, "2026-01-03", wall=1000),  # measured again apart: the newer wall
        row("dspy-miprov2", "d", 0.64, "2026-01-04", wall=3000, loadavg_end=[3.5, 2.0, 1.0]),  # loaded: not a wall
        row("dspy-miprov2", "d", 0.64, "2026-01-05", wall=2000, loadavg_end=[1.0, 1.3, 2.1]),  # a job beside it earlier
    ]
    (tmp_path / "compare_dspy-trec-label-seed0.jsonl").write_text("\n".join(json.dumps(r) for r in main_rows))
    (tmp_path / "compare_dspy-trec-label-seed0-wall.jsonl").write_text("\n".join(json.dumps(r) for r in wall_rows))
    (tmp_path / "compare_dspy-hotpotqa-500-seed0.jsonl").write_text(
        json.dumps(row("zero-shot", "z", 0.2, "2026-01-01"))
    )
    keys = {"zero-shot": "z", "dspy-zero-shot": "dz", "mipro": "m", "mipro-proposer": "p", "dspy-miprov2": "d"}

    table = dt.collect(tmp_path, keys=lambda task, seed, method: keys[method])
    assert set(table) == {("trec-label", 0), ("hotpotqa-500", 0)}
    trec = table[("trec-label", 0)]
    assert trec["mipro"] is not None and trec["mipro"].score == 0.60 and trec["mipro"].wall_s == 600
    assert trec["dspy-miprov2"] is not None and trec["dspy-miprov2"].wall_s == 1000
    assert trec["mipro-proposer"] is None and trec["zero-shot"].wall_s is None
    lines = dt.verdicts(table)
    assert lines[0].startswith("mipro vs MIPROv2, mean over 1 task-seed pairs: 0.600 vs 0.640") and "MISSED" in lines[0]
    assert lines[1].endswith("MET")  # 0.60 is above MIPROv2's lower bound 0.59
    assert "0.600x" in lines[2] and lines[2].endswith("MISSED")
    assert lines[3] == (
        "mipro - MIPROv2 per pair: mean -0.040 (from -0.040 to -0.040); mipro higher on 0 of 1 pairs, lower on 1 "
        "(two-sided sign test p = 1.00)"
    )
    assert any(x.startswith("without both MIPRO rows: hotpotqa-500 seed 0") for x in lines)
    assert any("MISSED on trec-label seed 0 (0.400 < 0.450)" in x for x in lines)
    assert "not run" in dt.markdown(table)


def test_dspy_targets_commands_are_the_light_defaults_without_a_cap() -> None:
    import compare_dspy as cd
    import dspy_targets as dt

    for task, argv in dt.SIDE_BY_SIDE.items():
        args = cd.parse_args(["--task", task, "--seed", "0", *argv.split()])
        assert (args.preset, args.cap, args.n_val) == ("light", None, 100), task
        assert args.n_test >= 125, task


def test_formats_resumed_run_skips_a_step_whose_row_is_recorded() -> None:
    import formats

    row = {"task": "sst2", "model": "0.5b", "format": "json", "demos": 0, "demo_layout_revision": 1,
           "reasoning": "step", "follow_up": False, "example_ids": ["a", "b"]}  # fmt: skip
    key = formats.row_key("sst2", "0.5b", "json")
    assert formats.key_of(row) == key
    assert formats.step_recorded([row], key, ["a", "b"])
    assert not formats.step_recorded([row], key, ["a", "b", "c"])  # the next step is still to score
    assert not formats.step_recorded([row], formats.row_key("sst2", "0.5b", "tags"), ["a", "b"])
    assert not formats.step_recorded([row], formats.row_key("sst2", "0.5b", "json", follow_up=True), ["a", "b"])


def test_formats_a_limited_or_stopped_run_counts_for_the_examples_it_scored() -> None:
    import formats

    def row(fmt: str, n: int, partial: bool) -> dict:
        return {"task": "gsm8k", "model": "0.5b", "format": fmt, "n": n, "partial": partial}

    rows = [row("tags", 20, False), row("json", 40, True), row("labels", 20, True), row("labels", 40, True)]
    # a `--limit 20` row once read as final: asked for 40 now, tags is scored again beyond its 20
    left = formats.left_to_score(rows, ["labels", "tags", "json", "recap"], 40, "gsm8k", "0.5b", 0, "step", False)
    assert left == ["tags", "recap"]
    assert formats.left_to_score(rows, ["labels", "json"], 100, "gsm8k", "0.5b", 0, "step", False) == ["labels", "json"]
    assert formats.left_to_score(rows, ["tags"], 40, "gsm8k", "0.5b", 0, "brief", False) == ["tags"]  # another key


def test_the_sign_test_of_the_mipro_pairs_is_the_exact_binomial_tail() -> None:
    import dspy_targets as dt

    assert dt.sign_test(0, 0) == 1.0 and dt.sign_test(1, 0) == 1.0
    assert dt.sign_test(2, 5) == dt.sign_test(5, 2) == 2 * (1 + 7 + 21) / 128  # P(X <= 2) + P(X >= 5), n = 7
    assert dt.sign_test(0, 10) == 2 / 1024
    line = dt.paired_line([0.045, -0.05, -0.03, 0.025, -0.075, -0.008, -0.015])
    assert "mean -0.015 (from -0.075 to +0.045); mipro higher on 2 of 7 pairs, lower on 5" in line
    assert line.endswith("p = 0.45)")


def test_formats_answers_replays_a_row_from_the_cache_alone_and_summarizes_its_wrong_answers(tmp_path: Path) -> None:
    """`formats_answers.py`: a row's replies come back from the answer cache under the server's identity, never
    from a model; the summary gives the signed error of numeric answers, and a row that does not replay (a
    reply missing, or a score that differs) stops the script with the row named."""
    import formats
    import formats_answers as fa
    from prompthone.lm import LM
    from prompthone.lm.scripted import ScriptedBackend

    bench = formats.BENCHES["bbh/object_counting"]
    examples = formats.sample(bench, None)[:6]
    gold = {ex.inputs["question"]: int(ex.labels["answer"]) for ex in examples}
    over = {q: n + (2 if i % 2 else 0) for i, (q, n) in enumerate(gold.items())}  # every other one 2 too high

    class AsServed(ScriptedBackend):  # answers as the server did, under its identity: what formats.py cached
        def identity(self) -> str:
            return fa.CacheOnly("qwen2.5-coder-1.5b", 18439).identity()

    def respond(request) -> str:
        question = next(q for q in over if q in request.messages[-1][1])
        return f'{{"answer": {over[question]}}}'

    cache = tmp_path / "responses-qwen2.5-coder-1.5b.sqlite"
    paid = LM(AsServed(respond, name="qwen2.5-coder-1.5b"), cache=str(cache))
    res = formats.evaluate_format(bench, "json", examples[:5], paid, None, progress=False)
    assert [r.score for r in res.records] == [1.0, 0.0, 1.0, 0.0, 1.0]
    row = {"task": bench.name, "model": "1.5b", "format": "json", "n": 5, "mean": 0.6, "date": "d",
           "example_ids": [ex.id for ex in examples[:5]], "parse_revision": 1}  # fmt: skip
    assert fa.latest_rows([row, {**row, "format": "dspy"}], [bench.name], ["1.5b"]) == [row]

    got = fa.replay(row, tmp_path, 18439, None)
    assert (got.n, got.score, got.signed_error, got.too_high, got.too_low) == (5, 0.6, 0.8, 2, 0)
    with pytest.raises(SystemExit, match="does not replay"):  # the sixth reply was never paid for
        fa.replay({**row, "n": 6, "example_ids": [ex.id for ex in examples]}, tmp_path, 18439, None)
    with pytest.raises(SystemExit, match=r"replays to 0\.600, the row says 0\.800"):
        fa.replay({**row, "mean": 0.8}, tmp_path, 18439, None)
    with pytest.raises(SystemExit, match="does not replay"):  # another port is another server: other keys
        fa.replay(row, tmp_path, 18440, None)


def test_formats_answers_counts_the_replies_the_label_set_rule_settled() -> None:
    import formats
    import formats_answers as fa
    from prompthone.evaluate import ExampleRecord

    examples = formats.sample(formats.BENCHES["trec-label"], None)[:3]
    raws = ["Label: entity\nThe question asks for a thing.", "Label: human", "Label: entity"]
    records = [
        ExampleRecord(ex.id, "scored", 0.0, {"label": raw.split("\n")[0].removeprefix("Label: ")}, raw=raw)
        for ex, raw in zip(examples, raws, strict=True)
    ]
    got = fa.summarize("trec-label", "0.5b", "labels", records, examples)
    assert got.label_set_reads == 1 and got.common[0] == ("entity", 2) and got.signed_error is None
    assert fa.summarize("sst2", "0.5b", "labels", records[:0], []).label_set_reads is None


def test_formats_held_out_sample_is_disjoint_seeded_and_kept_apart_from_the_first() -> None:
    """`formats.py --held-out`: a second sample of each task outside the first (on which each model's start
    format was chosen), the same on every call; its rows have their own key and name, so the table and the
    verdict of the first sample never mix them in, and `--report` checks the start's lead on them."""
    import formats

    bench = formats.BENCHES["trec-label"]
    first, held = formats.sample(bench, None), formats.sample(bench, None, formats.HELD_OUT)
    assert len(first) == len(held) == bench.n and not {e.id for e in first} & {e.id for e in held}
    assert [e.id for e in held] == [e.id for e in formats.sample(bench, None, formats.HELD_OUT)]
    plain = {"task": "sst2", "model": "1.5b", "format": "labels", "parse_revision": 1}
    assert formats.key_of({**plain, "sample": formats.HELD_OUT}) != formats.key_of(plain)
    assert formats.row_task({**plain, "sample": formats.HELD_OUT}) == "sst2 [held-out]"

    def row(task: str, fmt: str, right: int, sample: str | None = formats.HELD_OUT) -> dict:
        ids = [f"{task}-{i}" for i in range(10)]
        extra = {"sample": sample} if sample else {}
        return {"task": task, "model": "1.5b", "format": fmt, "n": 10, "mean": right / 10, "lo": 0.0, "hi": 1.0,
                "example_ids": ids, "scores": [1.0] * right + [0.0] * (10 - right), **extra}  # fmt: skip

    rows = [row(t, "labels", 6) for t in ("sst2", "trec-label")] + [row(t, "json", 4) for t in ("sst2", "trec-label")]
    check = formats.held_out_check(rows)
    assert check.startswith("- 1.5b, held-out sample (2 tasks: trec-label, sst2; 20 examples): start `labels` 60.0")
    assert "`json` 40.0 (the start ahead by +20.0, 95% CI" in check and "20 paired)" in check
    assert formats.held_out_check([row("sst2", "labels", 6, sample=None)]) == ""  # no held-out rows: nothing
    # the verdict is the first sample's: held-out rows measure none of its tasks
    mixed = formats.verdict([*rows, row("sst2", "labels", 6, sample=None)])
    assert "| 1.5b | labels (default) | 1 of 6 tasks measured |" in mixed
