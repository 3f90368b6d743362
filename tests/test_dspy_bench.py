"""The model-free logic of the DSPy side-by-side benchmark (issue 8): the call cap and sample efficiency.

No DSPy and no model here: `benchmarks/sample_efficiency.py` is plain Python on purpose. The
prompthone trajectory is read from the SQLite of a real (scripted-model) optimization run.
"""

from __future__ import annotations

import copy
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from prompthone.program.module import REASONING_DESCRIPTION
from sample_efficiency import (
    CallCap,
    CallCapReached,
    calls_to_reach,
    prompthone_trajectory,
    trajectory_from_marks,
)


def test_cap_refuses_the_call_that_would_go_over_and_counts_the_refusal() -> None:
    cap = CallCap(3)
    for _ in range(3):
        cap.reserve("task")
    with pytest.raises(CallCapReached, match="call cap of 3"):
        cap.reserve("proposer")
    assert cap.capped_calls() == 3
    assert cap.refused == 1
    assert cap.paid == {"task": 3}


def test_cap_counts_only_its_roles() -> None:
    cap = CallCap(1, capped_roles=["task"])
    cap.reserve("proposer")
    cap.reserve("proposer")
    cap.reserve("task")
    with pytest.raises(CallCapReached):
        cap.reserve("task")
    cap.reserve("proposer")  # proposer calls are not capped here
    assert cap.paid == {"proposer": 3, "task": 1}


def test_repeated_request_is_replayed_for_free_and_distinct_ones_are_not() -> None:
    cap = CallCap(1)
    k1 = cap.key("task", {"messages": [{"role": "user", "content": "a"}], "kwargs": {"temperature": 0}})
    k2 = cap.key("task", {"messages": [{"role": "user", "content": "a"}], "kwargs": {"temperature": 1.0}})
    k3 = cap.key("proposer", {"messages": [{"role": "user", "content": "a"}], "kwargs": {"temperature": 0}})
    assert len({k1, k2, k3}) == 3
    assert cap.replay("task", k1) is None
    cap.reserve("task")
    cap.store("task", k1, ["answer"], prompt_tokens=10, completion_tokens=2)
    assert cap.replay("task", k1) == ["answer"]  # at the cap, yet free
    assert cap.replayed == {"task": 1}
    assert cap.tokens == {"task_prompt": 10, "task_completion": 2}
    assert cap.replay("task", k2) is None


def test_copies_share_one_cap() -> None:
    cap = CallCap(2)
    holder = {"cap": cap}
    clone = copy.deepcopy(holder)
    assert clone["cap"] is cap and copy.copy(cap) is cap


def test_cap_is_not_overshot_by_threads() -> None:
    cap = CallCap(50)
    refused = []

    def worker() -> None:
        for _ in range(20):
            try:
                cap.reserve("task")
            except CallCapReached:
                refused.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cap.capped_calls() == 50
    assert len(refused) == 8 * 20 - 50 == cap.refused


def test_trajectory_from_marks_keeps_full_validation_scores_with_calls_at_that_time() -> None:
    cap = CallCap(None)
    cap.reserve("task")
    cap.mark("eval", n=4, score=0.25)  # minibatch: left out
    cap.reserve("task")
    cap.reserve("proposer")
    cap.mark("eval", n=8, score=0.5)
    cap.reserve("task")
    cap.mark("eval", n=8, score=0.75)
    assert trajectory_from_marks(cap.marks, n_val=8) == [(2, 0.5), (3, 0.75)]
    assert trajectory_from_marks(cap.marks, n_val=8, role="proposer") == [(1, 0.5), (1, 0.75)]


def test_calls_to_reach_is_the_first_point_at_or_above_the_target() -> None:
    traj = [(10, 0.2), (25, 0.6), (40, 0.5), (70, 0.8)]
    assert calls_to_reach(traj, 0.6) == 25
    assert calls_to_reach(traj, 0.55) == 25
    assert calls_to_reach(traj, 0.8) == 70
    assert calls_to_reach(traj, 0.9) is None
    assert calls_to_reach([], 0.1) is None


def _fake_run_db(path: Path) -> None:
    """The three tables the trajectory reads, as the run store writes them (see store/schema.py)."""
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE ph_events (id INTEGER PRIMARY KEY, ts REAL, kind TEXT, data TEXT);
        CREATE TABLE ph_trials (idx INTEGER PRIMARY KEY, candidate TEXT, score REAL, n INTEGER, full BOOLEAN,
                                best REAL, info TEXT, ts REAL);
        CREATE TABLE ph_lm_calls (id INTEGER PRIMARY KEY, ts REAL, role TEXT, model TEXT, prompt_tokens INTEGER,
                                  completion_tokens INTEGER, cost_usd REAL, latency_s REAL, cached BOOLEAN,
                                  finish_reason TEXT, cache_key TEXT);
        """
    )
    calls = [(1.0, "task", 0)] * 5  # scoring the start program on test, before the optimizer starts
    calls += [(11.0, "task", 0), (12.0, "task", 0), (12.5, "task", 1), (13.0, "proposer", 0)]
    calls += [(21.0, "teacher", 0), (22.0, "task", 0), (23.0, "task", 0)]
    con.executemany(
        "INSERT INTO ph_lm_calls (ts, role, model, prompt_tokens, completion_tokens, cost_usd, latency_s, cached) "
        "VALUES (?, ?, 'm', 1, 1, 0, 0, ?)",
        calls,
    )
    con.execute("INSERT INTO ph_events (ts, kind, data) VALUES (10.0, 'start', '{}')")
    con.executemany(
        "INSERT INTO ph_trials (idx, candidate, score, n, full, ts) VALUES (?, 'c', ?, ?, ?, ?)",
        [(0, 0.5, 2, 1, 12.8), (1, 0.9, 1, 0, 21.5), (2, 0.75, 2, 1, 24.0)],
    )
    con.commit()
    con.close()


def test_prompthone_trajectory_counts_paid_calls_since_the_start_up_to_each_full_trial(tmp_path: Path) -> None:
    db = tmp_path / "run.sqlite"
    _fake_run_db(db)
    # trial 0 at 12.8: two paid task calls since the start (the cached one is free, the proposer's is later)
    # trial 1 is a minibatch: left out; trial 2 at 24.0: 2 + 2 task, or + 1 teacher when teachers count
    assert prompthone_trajectory(db, roles=("task",)) == [(2, 0.5), (4, 0.75)]
    assert prompthone_trajectory(db, roles=("task", "teacher")) == [(2, 0.5), (5, 0.75)]
    assert calls_to_reach(prompthone_trajectory(db), 0.6) == 4


def test_prompthone_trajectory_needs_a_started_run(tmp_path: Path) -> None:
    db = tmp_path / "run.sqlite"
    _fake_run_db(db)
    con = sqlite3.connect(db)
    con.execute("DELETE FROM ph_events")
    con.commit()
    con.close()
    with pytest.raises(ValueError, match="no 'start' event"):
        prompthone_trajectory(db)


def test_prompthone_trajectory_of_a_real_run_matches_its_usage(tmp_path: Path, monkeypatch) -> None:
    """On a run store written by `run_optimization` (scripted server, no model): the first full trial is the
    start program on validation (every example paid), the last one comes after every optimization call."""
    from prompthone.lm import run_sync
    from prompthone.runs.runner import run_optimization
    from prompthone.runs.spec import RunSpec
    from prompthone.testing.fake_openai_server import FakeOpenAIServer
    from runlib import careful_math_responder, write_fake_gsm8k

    write_fake_gsm8k(tmp_path / "data")
    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))
    with FakeOpenAIServer(latency_ms=1, responder=careful_math_responder) as url:
        spec = RunSpec(task="gsm8k", optimizer="instruction-search", model=f"openai/fake@{url}", n_train=4,
                       n_val=10, n_test=10, data_root=str(tmp_path / "data"), concurrency=4, max_tokens=32)  # fmt: skip
        out = run_sync(run_optimization(spec, out_dir=tmp_path / "runs"))
    traj = prompthone_trajectory(out.run_dir / "run.sqlite")
    full = [t for t in out.result.trials if t.full]
    assert [s for _, s in traj] == [t.score for t in full]
    assert traj[0][0] == 10  # the start program on the 10 validation examples; test scoring is not counted
    assert traj[-1][0] == out.usage["task"]["paid_calls"]
    assert [c for c, _ in traj] == sorted(c for c, _ in traj)
    assert calls_to_reach(traj, out.result.best_score) <= traj[-1][0]


def test_cap_with_a_file_replays_an_earlier_session_as_calls_that_run_made(tmp_path: Path) -> None:
    """A row interrupted and run again: what the first session paid for comes back from the file, counted as
    the run's own calls (with their tokens), so calls by role do not depend on how many sessions it took."""
    path = tmp_path / "row.sqlite"
    first = CallCap(None, path=path)
    k1 = first.key("task", {"messages": [{"role": "user", "content": "a"}]})
    k2 = first.key("proposer", {"messages": [{"role": "user", "content": "b"}]})
    first.reserve("task")
    first.store("task", k1, ["label: human"], prompt_tokens=10, completion_tokens=3)
    first.reserve("proposer")
    first.store("proposer", k2, ["Be brief."], prompt_tokens=20, completion_tokens=4)
    first.close()

    again = CallCap(None, path=path)
    assert again.replay("task", k1) == ["label: human"]
    assert again.replay("task", k1) == ["label: human"]  # the second time: a repeat within this run, free
    assert again.paid == {"task": 1} and again.from_file == {"task": 1} and again.replayed == {"task": 1}
    assert again.tokens == {"task_prompt": 10, "task_completion": 3}
    k3 = again.key("task", {"messages": [{"role": "user", "content": "c"}]})
    assert again.replay("task", k3) is None

    capped = CallCap(0, path=path)  # a file hit is a call of the run: the cap still applies
    with pytest.raises(CallCapReached):
        capped.replay("proposer", k2)
    assert capped.from_file == {}


def test_cap_without_a_file_keeps_nothing_between_sessions(tmp_path: Path) -> None:
    first = CallCap(None)
    k = first.key("task", {"x": 1})
    first.reserve("task")
    first.store("task", k, ["y"])
    assert CallCap(None).replay("task", k) is None


def _bench_args(*extra: str):
    import compare_dspy

    argv = ["--task", "trec-label", "--preset", "light", "--n-train", "100", "--n-val", "100", "--n-test", "200"]
    return compare_dspy, compare_dspy.parse_args([*argv, *extra])


def test_light_preset_leaves_both_mipros_at_their_own_defaults() -> None:
    cd, args = _bench_args("--num-trials", "3", "--minibatch-size", "7")  # sized knobs: ignored under a preset
    assert cd.dspy_settings("miprov2", args) == {"auto": "light"}
    assert cd.prompthone_settings("mipro", args) == {"preset": "light", "proposer_max_tokens": 200}
    assert cd.prompthone_settings("mipro-proposer", args) == cd.prompthone_settings("mipro", args)
    assert args.cap is None


def test_row_key_names_what_decides_a_row_and_not_when_or_where_it_ran(tmp_path: Path) -> None:
    cd, args = _bench_args("--out", str(tmp_path / "a"), "--label", "first")
    _, same = _bench_args("--out", str(tmp_path / "b"), "--label", "second", "--port", "9000")
    _, seed1 = _bench_args("--seed", "1")
    _, smaller = _bench_args("--n-test", "100")
    key = cd.key_hash(cd.row_key("mipro", args))
    assert key == cd.key_hash(cd.row_key("mipro", same))
    others = {
        cd.key_hash(cd.row_key("mipro", seed1)),
        cd.key_hash(cd.row_key("mipro", smaller)),
        cd.key_hash(cd.row_key("mipro-proposer", args)),
        cd.key_hash(cd.row_key("dspy-miprov2", args)),
    }
    assert key not in others and len(others) == 4
    assert cd.cache_path("mipro", args) == cd.cache_path("mipro", same)
    assert cd.cache_path("mipro", args).name == f"trec-label-seed0-mipro-{key}.sqlite"
    # an optimizer's row is measured again when the layout of prompts with demos changed; zero-shot is not
    assert cd.row_key("mipro", args)["demo_layout_revision"] == cd.DEMO_LAYOUT_REVISION >= 2
    assert "demo_layout_revision" not in cd.row_key("zero-shot", args)
    assert "demo_layout_revision" not in cd.row_key("dspy-miprov2", args)


def test_a_preset_rows_key_names_its_instruction_pool_so_rows_from_the_larger_pool_are_not_replayed() -> None:
    cd, args = _bench_args()
    _, variant = _bench_args("--mipro-set", "num_instructions=3")
    _, six = _bench_args("--mipro-set", "num_instructions=6")
    assert cd.row_key("mipro", args)["settings"]["num_instructions"] == 3  # MIPROv2 light's pool
    assert cd.prompthone_settings("mipro", args).get("num_instructions") is None  # the run keeps the preset's own
    # a row that set 3 outright measured the same search: the same row; one with 6 (the old default) is another
    assert cd.key_hash(cd.row_key("mipro", args)) == cd.key_hash(cd.row_key("mipro", variant))
    assert cd.key_hash(cd.row_key("mipro", args)) != cd.key_hash(cd.row_key("mipro", six))
    assert "num_instructions" not in cd.row_key("dspy-miprov2", args)["settings"]


def test_a_start_whose_reasoning_field_is_worded_otherwise_is_another_row(monkeypatch) -> None:
    """A chain-of-thought start sends its reasoning field's wording: rows measured under the old one
    (keys without it) are not replayed for the new start, and programs that do not reason keep their keys."""
    cd, bbh = _bench_args("--task", "bbh/sports_understanding")
    _, trec = _bench_args()
    assert cd.start_reasoning(bbh) == {"solve": REASONING_DESCRIPTION} and cd.start_reasoning(trec) == {}
    assert "start_reasoning" not in cd.row_key("zero-shot", trec)
    assert "start_reasoning" not in cd.row_key("dspy-zero-shot", bbh)  # DSPy renders its own
    new = cd.key_hash(cd.row_key("zero-shot", bbh))
    monkeypatch.setattr(cd, "LEGACY_REASONING", REASONING_DESCRIPTION)  # as if the start still had the old wording
    assert "start_reasoning" not in cd.row_key("zero-shot", bbh) and cd.key_hash(cd.row_key("zero-shot", bbh)) != new


def test_a_start_that_follows_up_unreadable_replies_is_another_row(monkeypatch) -> None:
    """A chain-of-thought start asks once more for an answer its reply lacked (since that became its
    default): its rows are keyed apart from the rows measured without the ask; a start of `Predict`s
    (no ask) keeps its key."""
    cd, bbh = _bench_args("--task", "bbh/sports_understanding")
    _, trec = _bench_args()
    assert cd.start_follow_up(bbh) == ["solve"] and cd.start_follow_up(trec) == []
    assert cd.row_key("zero-shot", bbh)["start_follow_up"] == ["solve"]
    assert "start_follow_up" not in cd.row_key("mipro", trec)
    assert "start_follow_up" not in cd.row_key("dspy-zero-shot", bbh)  # DSPy's side has its own retry
    asks = cd.key_hash(cd.row_key("zero-shot", bbh))
    monkeypatch.setattr(cd._start_program("bbh/sports_understanding", None, bbh.model).solve, "follow_up", False)
    assert "start_follow_up" not in cd.row_key("zero-shot", bbh) and cd.key_hash(cd.row_key("zero-shot", bbh)) != asks


def test_the_server_the_script_starts_is_sent_one_request_at_a_time_and_the_row_key_ignores_it() -> None:
    cd, started = _bench_args()
    _, theirs = _bench_args("--base-url", "http://127.0.0.1:9/v1")
    _, named = _bench_args("--base-url", "http://127.0.0.1:9/v1", "--one-at-a-time")
    _, unnamed = _bench_args("--no-one-at-a-time")
    assert [cd.sends_one_at_a_time(a) for a in (started, theirs, named, unnamed)] == [True, False, True, False]
    # the order of requests changes no answer: rows with and without it share their key (and cache)
    assert cd.row_key("mipro", started) == cd.row_key("mipro", unnamed)


def test_rows_in_the_results_file_are_found_by_key(tmp_path: Path) -> None:
    import json

    cd, args = _bench_args()
    results = tmp_path / "r.jsonl"
    assert cd.cached_rows(results) == {}
    key = cd.key_hash(cd.row_key("dspy-zero-shot", args))
    results.write_text(json.dumps({"method": "dspy-zero-shot"}) + "\n" + json.dumps({"row_key": key, "x": 1}) + "\n")
    assert cd.cached_rows(results) == {key: {"row_key": key, "x": 1}}  # a row from before keys existed: none


def test_a_mipro_row_key_reads_search_formats_as_it_acts_on_the_start() -> None:
    import compare_dspy

    base = ["--task", "trec-label", "--preset", "light", "--seed", "0"]

    def key(*extra: str) -> dict:
        return compare_dspy.row_key("mipro", compare_dspy.parse_args([*base, *extra]))["settings"]

    # trec-label's Predict starts in json: the default ({"json": ["tags"]}) searches tags there, the same row
    # as asking for tags; asking for labels is another row
    assert key() == key("--search-formats", "tags") == {"preset": "light", "proposer_max_tokens": 200,
                                                       "search_formats": ["tags"], "num_instructions": 3}  # fmt: skip
    assert key("--search-formats", "labels")["search_formats"] == ["labels"]
    # off searches nothing: the key of the rows measured before the setting existed (no search_formats)
    assert key("--search-formats", "off") == {"preset": "light", "proposer_max_tokens": 200, "num_instructions": 3}
    # what is run is what was asked: off is passed on as false, the default is left to prompthone
    args = compare_dspy.parse_args([*base, "--search-formats", "off"])
    assert compare_dspy.prompthone_settings("mipro", args)["search_formats"] is False
    assert "search_formats" not in compare_dspy.prompthone_settings("mipro", compare_dspy.parse_args(base))


def test_a_prompthone_row_starts_from_the_zero_shot_rows_test_answers(tmp_path: Path, monkeypatch) -> None:
    """The start program's test scoring is the zero-shot row's requests: a row seeded with that row's answer
    file pays for it once, and its optimization calls and scores are those of an unseeded row."""
    import compare_dspy as cd
    from prompthone.lm import run_sync
    from prompthone.testing.fake_openai_server import FakeOpenAIServer
    from runlib import careful_math_responder, write_fake_gsm8k

    write_fake_gsm8k(tmp_path / "data")
    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "run-cache"))
    monkeypatch.setenv("PROMPTHONE_RESPONSE_CACHE", str(tmp_path / "unused.sqlite"))  # restored after the test
    sizes = ["--n-train", "4", "--n-val", "6", "--n-test", "8", "--num-trials", "2", "--num-candidates", "2",
             "--minibatch-size", "3", "--full-eval-every", "2", "--max-demos", "1"]  # fmt: skip

    def args(cache_dir: str):
        return cd.parse_args(
            ["--task", "gsm8k", "--data-root", str(tmp_path / "data"), "--cache-dir", cache_dir, *sizes]
        )

    seeded_args, plain_args = args(str(tmp_path / "seeded")), args(str(tmp_path / "plain"))
    with FakeOpenAIServer(latency_ms=1, responder=careful_math_responder) as url:
        zs_cache = cd.cache_path("zero-shot", seeded_args)
        zs_cache.parent.mkdir(parents=True)
        zero = run_sync(cd.run_zero_shot(url, seeded_args, zs_cache))
        seeded_cache = cd.cache_path("mipro", seeded_args)
        assert cd.seed_from_zero_shot("mipro", seeded_args, seeded_cache) == zs_cache.resolve()
        assert cd.seed_from_zero_shot("mipro", seeded_args, seeded_cache) is None  # its file exists now: kept
        assert cd.seed_from_zero_shot("dspy-miprov2", seeded_args, tmp_path / "d.sqlite") is None
        seeded = run_sync(cd.run_prompthone("mipro", url, seeded_args, tmp_path / "out-a", seeded_cache))
        plain_cache = cd.cache_path("mipro", plain_args)
        plain_cache.parent.mkdir(parents=True)
        assert cd.seed_from_zero_shot("mipro", plain_args, plain_cache) is None  # no zero-shot row there
        plain = run_sync(cd.run_prompthone("mipro", url, plain_args, tmp_path / "out-b", plain_cache))
    assert zero["test_calls"] == 8
    assert seeded["start_test"] == plain["start_test"] == {k: zero["test"][k] for k in seeded["start_test"]}
    assert seeded["test"] == plain["test"] and seeded["calls"] == plain["calls"]
    assert seeded["test_calls"] == plain["test_calls"] - 8


def test_a_row_that_searched_other_formats_than_the_default_is_named_by_them_beside_the_default_row():
    cd, plain = _bench_args()
    _, searched = _bench_args("--search-formats", "tags,labels")
    default = cd.default_search_formats(searched)
    assert default == cd.default_search_formats(plain) == cd.row_key("mipro", plain)["settings"]["search_formats"]
    rows = [
        {"method": "mipro", "key": cd.row_key("mipro", plain), "test": {}},
        {"method": "mipro", "key": cd.row_key("mipro", searched), "test": {}},
        {"method": "mipro", "key": {"settings": {"preset": "light"}}, "test": {}},  # before formats were searched
        {"method": "mipro", "variant": "cover_labels=false", "key": {"settings": {"search_formats": ["labels"]}}},
        {"method": "dspy-miprov2", "key": cd.row_key("dspy-miprov2", searched), "test": {}},
    ]
    assert [cd.row_name(r, default) for r in rows] == [
        "mipro",
        "mipro [search_formats=tags,labels]",
        "mipro [search_formats=off]",
        "mipro [cover_labels=false, search_formats=labels]",
        "dspy-miprov2",
    ]
    assert cd.format_names({"json": ["tags"], "labels": ["json"]}) == "json:tags;labels:json"


def test_another_models_rows_go_to_a_results_file_of_their_own_that_the_side_by_side_does_not_read(tmp_path):
    cd, plain = _bench_args()
    _, larger = _bench_args("--model", "qwen2.5-coder-1.5b", "--alias", "qwen1.5b")
    _, bbh = _bench_args("--task", "bbh/sports_understanding", "--seed", "2")
    results = cd.ROOT / "docs" / "results"
    assert cd.default_results_path(plain) == results / "compare_dspy-trec-label-seed0.jsonl"
    assert cd.default_results_path(bbh) == results / "compare_dspy-bbh-sports_understanding-seed2.jsonl"
    assert cd.default_results_path(larger) == results / "compare_dspy-qwen2.5-coder-1.5b-trec-label-seed0.jsonl"
    import dspy_targets

    for args in (plain, larger):
        (tmp_path / cd.default_results_path(args).name).write_text("")
    assert dspy_targets.seeds_of("trec-label", tmp_path) == [0]
    assert dspy_targets.results_paths("trec-label", 0, tmp_path) == [tmp_path / "compare_dspy-trec-label-seed0.jsonl"]


def test_the_wall_of_a_row_resumed_from_an_earlier_sessions_answers_is_marked_as_not_comparable():
    import compare_dspy as cd

    one_go = {"wall_s_optimization": 600.0, "cache_entries_at_start": 0, "cache_seeded_from": None}
    seeded = one_go | {"cache_entries_at_start": 200, "cache_seeded_from": "trec-label-seed0-zero-shot-ab.sqlite"}
    resumed = one_go | {"cache_entries_at_start": 1434}
    assert [cd.optimize_wall(r) for r in (one_go, seeded, resumed)] == ["10.0 min", "10.0 min", "10.0 min (resumed)"]
    assert cd.optimize_wall({"wall_s_optimization": 0.0}) == "-"
    assert cd.optimize_wall(one_go | {"method": "dspy-zero-shot", "wall_s_optimization": 0.02}) == "-"


def test_the_choices_table_gives_a_runs_proposal_counts_once_not_on_every_modules_line():
    import compare_dspy as cd

    row = {
        "method": "mipro",
        "chosen": {
            "query": {"instruction": "Write a search query.", "format": "json", "demos": 4},
            "answer": {"instruction": "Answer | briefly.\nUse the context.", "format": "tags", "demos": 3},
        },
        "proposals": {
            "checked": 4,
            "kept": 3,
            "repaired": 1,
            "rejected": 0,
            "chosen": {"query": "start", "answer": "kept"},
        },
    }
    lines = [line for line in cd.choices_markdown([row]).splitlines() if line.startswith("| mipro |")]
    assert lines == [
        "| mipro | query | start | json | 4 | 4 checked: 3 kept / 1 repaired / 0 rejected | Write a search query. |",
        "| mipro | answer | kept | tags | 3 |  | Answer \\| briefly. Use the context. |",
    ]
    assert cd.choices_markdown([{"method": "mipro", "test": {}}]) == ""  # a row from before choices were kept


def test_a_mipro_ablation_is_its_own_row_and_a_mistyped_setting_stops_before_any_server(tmp_path, monkeypatch):
    cd, plain = _bench_args()
    _, ablation = _bench_args("--mipro-set", "cover_labels=false")
    assert cd.prompthone_settings("mipro", ablation) == {
        **cd.prompthone_settings("mipro", plain),
        "cover_labels": False,
    }
    assert cd.key_hash(cd.row_key("mipro", ablation)) != cd.key_hash(cd.row_key("mipro", plain))
    assert cd.key_hash(cd.row_key("dspy-miprov2", ablation)) == cd.key_hash(cd.row_key("dspy-miprov2", plain))
    rows = [{"method": "mipro", "test": {}}, {"method": "mipro", "variant": "cover_labels=false", "test": {}}]
    assert [cd.row_name(r) for r in rows] == ["mipro", "mipro [cover_labels=false]"]
    with pytest.raises(SystemExit, match="expects KEY=VALUE"):
        cd.mipro_overrides(cd.parse_args(["--task", "trec-label", "--mipro-set", "cover_labels"]))
    argv = ["compare_dspy.py", "--task", "trec-label", "--methods", "mipro", "--mipro-set", "cover_labelz=false",
            "--results", str(tmp_path / "r.jsonl"), "--out", str(tmp_path / "out")]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(cd, "llama_server", lambda *a, **k: pytest.fail("a server was started"))
    with pytest.raises(SystemExit, match=r"--mipro-set: unknown MIPRO setting\(s\) \['cover_labelz'\]"):
        cd.main()


def test_a_row_starts_in_its_models_start_format_and_the_05b_rows_keep_their_keys() -> None:
    """The start program of a row is the one a run on `--model` starts: on the 1.5B model its `Predict` starts
    in `labels` (the catalog's), so its rows are keyed apart and MIPRO's default format search, which moves
    only a `json` start, searches nothing there; on the 0.5B model the start is `json` as before, so the rows
    measured before start formats existed keep their keys (and their answer files)."""
    import json

    cd, small = _bench_args()
    _, large = _bench_args("--model", "qwen2.5-coder-1.5b", "--alias", "qwen1.5b")
    assert cd.start_formats(small) == {"classify": "json"} and cd.start_formats(large) == {"classify": "labels"}
    assert cd.key_settings("mipro", small)["search_formats"] == ["tags"]
    assert "search_formats" not in cd.key_settings("mipro", large)
    # `labels` everywhere is the layout every row had before formats were named: such a key names none
    assert "start_formats" not in cd.row_key("zero-shot", large) and cd.row_key("zero-shot", small)["start_formats"]
    results = Path(__file__).resolve().parents[1] / "docs" / "results" / "compare_dspy-trec-label-seed0.jsonl"
    committed = [json.loads(line) for line in results.open()]
    keys = [r["key"] for r in committed if r.get("key", {}).get("method") == "zero-shot"]
    assert cd.row_key("zero-shot", small) in keys  # the 0.5B zero-shot row is found under the key it had
