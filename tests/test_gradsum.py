"""GRAD-SUM's loop with scripted LMs: attribution, summarization vs its ablation, beam, early stop, budget.

The scripted task model answers "what is N?" correctly when its instruction says `LEVEL k` with
N % 4 < k, so a higher level scores better and the tests can steer the search through the edits.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from prompthone.data.example import Example
from prompthone.evaluate import Evaluator
from prompthone.lm import LM
from prompthone.lm.scripted import ScriptedBackend
from prompthone.metrics import ExactMatch, JudgeMetric
from prompthone.optimize import Budget, OptimizationSetup
from prompthone.optimize.gradsum import GradSum, GradSumNoSummary, read_instruction, read_module_name
from prompthone.program import Candidate, Predict, Program

GRADIENT = "Answer in at most three short sentences"
SUMMARY = "Answer with one general direction for the instruction"
EDIT = "Rewrite the instruction in your own words"
ATTRIBUTION = "Which step's output went wrong"


class QA(Program):
    def __init__(self) -> None:
        self.answer = Predict("question -> answer", instruction="LEVEL 1")

    def forward(self, question: str) -> dict:
        return {"answer": self.answer(question=question).answer}


def examples(ids, prefix="q") -> list[Example]:
    return [Example(id=f"{prefix}{i}", inputs={"question": f"what is {i}?"}, labels={"answer": str(i)}) for i in ids]


def level(text: str) -> int:
    m = re.search(r"LEVEL (\d+)", text)
    return int(m.group(1)) if m else 0


def task_reply(req) -> str:
    n = int(re.findall(r"what is (\d+)\?", req.messages[-1][1])[-1])
    return f"Answer: {n if n % 4 < level(req.messages[0][1]) else n + 100}"


class Proposer:
    """A scripted proposer that records what each kind of step was asked."""

    def __init__(self, edit=None) -> None:
        self.asked: dict[str, list] = {GRADIENT: [], SUMMARY: [], EDIT: [], ATTRIBUTION: []}
        self.edit = edit or (
            lambda req, current: f"<instruction>LEVEL {current + 1 + req.sample_index % 2}</instruction>"
        )

    def __call__(self, req) -> str:
        prompt = req.messages[-1][1]
        for kind in self.asked:
            if kind in prompt:
                self.asked[kind].append(req)
                break
        else:
            raise AssertionError(f"unexpected proposer prompt: {prompt[:200]}")
        if kind == GRADIENT:
            ex = re.search(r"Question: (what is \d+\?)", prompt).group(1)
            return f"GRADIENT for {ex}: be more careful."
        if kind == SUMMARY:
            return "SUMMARY: raise the level for every question."
        if kind == EDIT:
            current = level(prompt.split("Its current instruction")[1])
            return self.edit(req, current)
        raise AssertionError("attribution is not expected for a one-module program")


def make_setup(proposer, *, train=range(0, 8), val=range(100, 112), budget=None, program=None, metric=None,
               task=task_reply) -> OptimizationSetup:  # fmt: skip
    program = program or QA()
    task_lm = LM(ScriptedBackend(task), cache=False)
    return OptimizationSetup(
        program=program,
        trainset=examples(train),
        valset=examples(val),
        evaluator=Evaluator(program, metric or ExactMatch(), task_lm),
        task_lm=task_lm,
        proposer_lm=LM(ScriptedBackend(proposer), cache=False),
        budget=budget or Budget(),
    )


def run(optimizer, setup):
    import asyncio

    return asyncio.run(optimizer.optimize(setup))


# -- summarization present vs absent ------------------------------------------------------------------
def test_gradsum_edits_from_one_summary_of_all_gradients():
    proposer = Proposer()
    result = run(GradSum(iterations=1, minibatch_size=8, edits_per_prompt=2), make_setup(proposer))
    # LEVEL 1 answers only n % 4 == 0 right: 6 of the 8 training questions fail, one gradient each
    assert len(proposer.asked[GRADIENT]) == 6
    assert len(proposer.asked[SUMMARY]) == 1
    summary_prompt = proposer.asked[SUMMARY][0].messages[-1][1]
    assert summary_prompt.count("GRADIENT for") == 6
    edits = proposer.asked[EDIT]
    assert len(edits) == 2
    for req in edits:
        prompt = req.messages[-1][1]
        assert "SUMMARY: raise the level" in prompt and "GRADIENT for" not in prompt
    assert sorted(r.sample_index for r in edits) == [0, 1] and all(r.temperature > 0 for r in edits)
    assert result.info["history"][0]["parents"][0]["failures"] == 6


def test_ablation_edits_from_a_few_raw_gradients_and_never_summarizes():
    proposer = Proposer()
    result = run(
        GradSumNoSummary(iterations=1, minibatch_size=8, edits_per_prompt=3, failures_per_edit=2), make_setup(proposer)
    )
    assert proposer.asked[SUMMARY] == []
    assert len(proposer.asked[GRADIENT]) == 6
    seen = []
    for req in proposer.asked[EDIT]:
        prompt = req.messages[-1][1]
        assert "SUMMARY" not in prompt
        picked = re.findall(r"GRADIENT for (what is \d+\?)", prompt)
        assert len(picked) == 2
        seen.append(tuple(picked))
    assert len(set(seen)) > 1  # different edits follow different failures
    assert result.info["settings"]["failures_per_edit"] == 2


# -- beam bookkeeping, early stop, budget -------------------------------------------------------------
def test_beam_keeps_the_best_prompts_by_validation_score_and_returns_the_best():
    proposer = Proposer()
    setup = make_setup(proposer)
    result = run(GradSum(beam_width=2, edits_per_prompt=2, iterations=2, minibatch_size=4, patience=5), setup)
    vals = {t.candidate: t.score for t in result.trials if t.full}
    # start LEVEL 1 -> 0.25; its edits LEVEL 2 (0.5) and LEVEL 3 (0.75); then children of both parents
    assert vals[setup.start] == pytest.approx(0.25)
    assert result.start_score == pytest.approx(0.25)
    assert result.best_score == max(vals.values()) == pytest.approx(1.0)
    assert level(result.best["answer"].instruction) >= 4
    beam = result.info["beam"]
    assert len(beam) == 2
    assert [b["val"] for b in beam] == sorted((b["val"] for b in beam), reverse=True)
    assert beam[0]["candidate"] == result.best.hash
    # every candidate is scored on validation once: in iteration 2, LEVEL 3 -> LEVEL 4, 5 are new, while
    # LEVEL 2 -> LEVEL 3, 4 repeat prompts already seen and are not scored again
    full = [t.candidate for t in result.trials if t.full]
    assert len(full) == len(set(full)) == 1 + 2 + 2
    assert len(result.info["history"][1]["children"]) == 2
    assert sum(len(p["edits"]) for p in result.info["history"][1]["parents"]) == 4
    # each iteration's parents are the previous beam
    parents_it2 = {p["candidate"] for p in result.info["history"][1]["parents"]}
    levels_it1 = {c["candidate"]: c["val"] for c in result.info["history"][0]["children"]}
    assert parents_it2 == set(levels_it1)  # both children beat the start and filled the 2-wide beam
    # minibatch trials are never the result, and they come from the trainset only
    train_ids = {e.id for e in setup.trainset}
    assert all(t.n == 4 for t in result.trials if not t.full)
    assert result.stopped_by == "completed"
    assert train_ids.isdisjoint({e.id for e in setup.valset})


def test_early_stop_when_validation_stalls():
    stuck = Proposer(
        edit=lambda req, current: f"<instruction>LEVEL {current} (variant {req.sample_index})</instruction>"
    )
    events = []
    setup = make_setup(stuck)
    setup.events = lambda kind, data: events.append((kind, data))
    result = run(GradSum(beam_width=2, edits_per_prompt=2, iterations=10, minibatch_size=4, patience=2), setup)
    assert result.stopped_by == "early_stop"
    assert len(result.info["history"]) == 2
    assert [k for k, _ in events].count("early_stop") == 1
    assert result.best == setup.start  # ties keep the older prompt
    # edits of later iterations use new sample indexes, so they are new samples, not cache replays
    indexes = [r.sample_index for r in stuck.asked[EDIT]]
    assert set(indexes) >= {0, 1, 2, 3}


def test_a_spent_budget_returns_the_best_prompt_scored_so_far():
    proposer = Proposer()
    setup = make_setup(proposer, budget=Budget(max_lm_calls=12 + 8 + 6 + 1 + 2 + 12))
    result = run(GradSum(beam_width=2, edits_per_prompt=2, iterations=5, minibatch_size=8), setup)
    assert result.stopped_by == "lm_calls"
    assert result.best_score == max(t.score for t in result.trials if t.full)
    assert result.best_score > result.start_score


def test_a_perfect_minibatch_gives_no_gradients_and_counts_as_a_stall():
    proposer = Proposer()
    setup = make_setup(proposer, train=[0, 4, 8, 12])  # all n % 4 == 0: LEVEL 1 gets them right
    result = run(GradSum(iterations=3, minibatch_size=4, patience=1), setup)
    assert proposer.asked[GRADIENT] == [] and result.stopped_by == "early_stop"
    assert len([t for t in result.trials if t.full]) == 1


def test_a_task_description_setting_reaches_every_proposer_prompt():
    proposer = Proposer()
    run(GradSum(iterations=1, minibatch_size=8, task_description="Say the number asked for."), make_setup(proposer))
    for kind in (GRADIENT, SUMMARY, EDIT):
        assert proposer.asked[kind]
        assert all("The system's task: Say the number asked for." in r.messages[-1][1] for r in proposer.asked[kind])
    plain = Proposer()
    run(GradSum(iterations=1, minibatch_size=8), make_setup(plain))
    assert not any("The system's task" in r.messages[-1][1] for r in plain.asked[GRADIENT])


def test_settings_are_checked():
    with pytest.raises(ValueError, match="beam_width must be an integer >= 1"):
        GradSum(beam_width=0)
    with pytest.raises(ValueError, match="attribution"):
        GradSum(attribution="random")
    with pytest.raises(ValueError, match="failures_per_edit"):
        GradSumNoSummary(failures_per_edit=0)
    with pytest.raises(ValueError, match="edit_temperature"):
        GradSum(edit_temperature=0)


# -- several modules: attribution -----------------------------------------------------------------------
class TwoStage(Program):
    """Writes a search query, then answers from it: a bad query makes a wrong answer downstream."""

    def __init__(self) -> None:
        self.query = Predict("question -> search_query", instruction="QUERY-INSTRUCTION")
        self.answer = Predict("question, search_query -> answer", instruction="ANSWER-INSTRUCTION")

    def forward(self, question: str) -> dict:
        q = self.query(question=question).search_query or "none"
        return {"answer": self.answer(question=question, search_query=q).answer}


def two_stage_task(req) -> str:
    system, user = req.messages[0][1], req.messages[-1][1]
    n = int(re.findall(r"what is (\d+)\?", user)[-1])
    if "QUERY-INSTRUCTION" in system:
        if n == 3:
            return ""  # the query module's reply cannot be read
        return f"Search Query: {'garbage' if n % 2 else f'number {n}'}"
    if "Search Query: garbage" in user or "Search Query: none" in user:
        return f"Answer: {n + 1}"  # wrong because the query was bad or missing
    return f"Answer: {n if n != 6 else 66}"  # 6: a good query, yet a wrong answer: the answer step's fault


class TwoStageProposer(Proposer):
    def __call__(self, req) -> str:
        prompt = req.messages[-1][1]
        if ATTRIBUTION in prompt:
            self.asked[ATTRIBUTION].append(req)
            blame = "query" if "Search Query: garbage" in prompt else "answer"
            return f"Reason: step {blame} went wrong.\nStep: {blame}"
        if GRADIENT in prompt:
            self.asked[GRADIENT].append(req)
            module = re.search(r"The step to improve: (\w+)", prompt).group(1)
            ex = re.search(r"Question: (what is \d+\?)", prompt).group(1)
            return f"GRADIENT[{module}] for {ex}"
        if SUMMARY in prompt:
            self.asked[SUMMARY].append(req)
            module = re.search(r"The step: (\w+)", prompt).group(1)
            return f"SUMMARY[{module}] from {prompt.count('GRADIENT[')} gradients"
        if EDIT in prompt:
            self.asked[EDIT].append(req)
            module = re.search(r"The step: (\w+)", prompt).group(1)
            return f"<instruction>{module.upper()}-INSTRUCTION v{req.sample_index}</instruction>"
        raise AssertionError(prompt[:200])


def test_failures_are_attributed_to_the_module_at_fault_and_only_it_is_edited():
    proposer = TwoStageProposer()
    program = TwoStage()
    # train 1, 3, 5: odd; 1 and 5 get a garbage query, 3's query reply is unreadable; 6: the answer step errs
    setup = make_setup(proposer, program=program, train=[1, 2, 3, 4, 5, 6], val=[10, 12], task=two_stage_task)
    events: list = []
    setup.events = lambda k, d: events.append((k, d))
    completions: list = []
    setup.proposer_lm.listeners.append(completions.append)
    result = run(GradSum(iterations=1, minibatch_size=6, edits_per_prompt=1), setup)
    # every proposer call, attribution included, goes through the shared call path: one event each
    proposals = [d for k, d in events if k == "proposal"]
    assert sorted(d["cache_key"] for d in proposals) == sorted(c.cache_key for c in completions)
    assert Counter(d["purpose"] for d in proposals) == {
        "gradsum_attribution": 3, "gradsum_gradient": 4, "gradsum_summary": 2, "gradsum_edit": 2,
    }  # fmt: skip
    assert sorted(d["text"] for d in proposals if d["purpose"] == "gradsum_attribution") == ["answer", "query", "query"]
    attributed = result.info["history"][0]["parents"][0]["attributed"]
    assert attributed == {
        "q1": ["query", "lm"],
        "q3": ["query", "parse failure"],  # evident from the trace: no LM call needed
        "q5": ["query", "lm"],
        "q6": ["answer", "lm"],
    }
    assert len(proposer.asked[ATTRIBUTION]) == 3
    attribution_prompt = proposer.asked[ATTRIBUTION][0].messages[-1][1]
    assert "Step 1: query" in attribution_prompt and "Step 2: answer" in attribution_prompt
    # each gradient is asked for the module at fault, with that module's instruction
    for req in proposer.asked[GRADIENT]:
        prompt = req.messages[-1][1]
        module = re.search(r"The step to improve: (\w+)", prompt).group(1)
        assert f"{module.upper()}-INSTRUCTION" in prompt.split("What happened")[0]
    summaries = {r.messages[-1][1].split("The step: ")[1].split()[0]: r for r in proposer.asked[SUMMARY]}
    assert summaries["query"].messages[-1][1].count("GRADIENT[query]") == 3
    assert summaries["answer"].messages[-1][1].count("GRADIENT[answer]") == 1
    (child,) = [t.candidate for t in result.trials if t.full and t.candidate != setup.start]
    assert child["query"].instruction == "QUERY-INSTRUCTION v0"
    assert child["answer"].instruction == "ANSWER-INSTRUCTION v0"


def test_a_module_without_failures_keeps_its_prompt():
    proposer = TwoStageProposer()
    setup = make_setup(proposer, program=TwoStage(), train=[1, 2, 4, 5], val=[10], task=two_stage_task)
    result = run(GradSum(iterations=1, minibatch_size=4, edits_per_prompt=2), setup)
    children = [t.candidate for t in result.trials if t.full and t.candidate != setup.start]
    assert len(children) == 2
    for child in children:
        assert child["answer"] == setup.start["answer"]  # untouched module: same params
        assert child["query"].instruction.startswith("QUERY-INSTRUCTION v")
    assert all(m == "query" for m, _ in result.info["history"][0]["parents"][0]["attributed"].values())


def test_attribution_last_blames_the_last_module_without_asking():
    proposer = TwoStageProposer()
    setup = make_setup(proposer, program=TwoStage(), train=[1, 2, 4, 5], val=[10], task=two_stage_task)
    result = run(GradSum(iterations=1, minibatch_size=4, attribution="last"), setup)
    assert proposer.asked[ATTRIBUTION] == []
    assert set(map(tuple, result.info["history"][0]["parents"][0]["attributed"].values())) == {("answer", "last")}


def test_a_judge_metric_drives_the_loop_and_its_calls_count_in_the_budget():
    def judge(req):
        user = req.chat[1]["content"]
        right = re.search(r"Reference answer.*?\n(\d+)\n\nOutput to judge:\nAnswer: (\d+)", user, re.S)
        return f"Reasoning: {'matches' if right.group(1) == right.group(2) else 'differs from'} the reference.\n" \
               f"Score: {int(right.group(1) == right.group(2))}"  # fmt: skip

    judge_lm = LM(ScriptedBackend(judge), cache=False)
    metric = JudgeMetric(judge_lm, task_description="Answer.", criteria="1 if equal to the reference.",
                         reference_field="answer")  # fmt: skip
    proposer = Proposer()
    setup = make_setup(proposer, metric=metric)
    result = run(GradSum(iterations=1, minibatch_size=8), setup)
    assert "judge" in setup.budget.usage_by_role()
    assert judge_lm.usage.calls == 12 + 8 + 12 * len([t for t in result.trials if t.full and t.index > 0])
    gradient_prompt = proposer.asked[GRADIENT][0].messages[-1][1]
    assert "judge score 0 on a 0-1 scale: differs from the reference" in gradient_prompt
    # the judge's task description is GRAD-SUM's task description: every proposer prompt shows it
    for kind in (GRADIENT, SUMMARY, EDIT):
        assert all("The system's task: Answer." in r.messages[-1][1] for r in proposer.asked[kind])
    assert result.best_score > result.start_score


def test_estimate_counts_calls_by_role():
    setup = make_setup(Proposer())
    est = GradSum(beam_width=2, edits_per_prompt=2, iterations=3, minibatch_size=4).estimate(setup)
    # parents: 1 + 2 * 2 = 5; validation scorings: 1 + 5 * 2 = 11 of 12 examples; minibatches: 5 * 4
    assert est["task"]["calls"] == 11 * 12 + 5 * 4
    assert est["proposer"]["calls"] == 5 * (2 + 2 + 1)
    assert "judge" not in est


# -- reading replies --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("<instruction>Classify the question.</instruction>", "Classify the question."),
        ("Sure! Here is the improved instruction:\n<instruction>\nBe brief.\n</instruction>\nHope it helps",
         "Be brief."),
        ("Here is the new instruction:\nAnswer with one word.", "Answer with one word."),
        ('"Answer with one word."', "Answer with one word."),
        ("<instruction>Cut off mid", "Cut off mid"),
        ("```\nSolve it step by step.\n```", "Solve it step by step."),
        ("<instruction></instruction>", None),
        ("", None),
    ],
)  # fmt: skip
def test_read_instruction(reply, expected):
    assert read_instruction(reply) == expected


def test_read_module_name():
    names = ["query", "answer"]
    assert read_module_name("Reason: bad query.\nStep: query", names) == "query"
    assert read_module_name("Step: **Answer**", names) == "answer"
    assert read_module_name("The answer step failed", names) == "answer"
    assert read_module_name("Both query and answer", names) is None


def test_the_start_candidate_may_differ_from_the_program_defaults():
    proposer = Proposer()
    setup = make_setup(proposer)
    setup.start = Candidate.default(setup.program).with_module(
        "answer", setup.program.answer.params.with_instruction("LEVEL 3")
    )
    result = run(GradSum(iterations=1, minibatch_size=8), setup)
    assert result.start_score == pytest.approx(0.75)
    assert all("LEVEL 3" in r.messages[-1][1] for r in proposer.asked[SUMMARY])
